"""Review policy: which detections a human must check, and why (a pure, deterministic function)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labelloop_core.geometry import RatioBox
from labelloop_core.naming import sha256

LOW_CONFIDENCE = "LOW_CONFIDENCE"
NO_DETECTIONS = "NO_DETECTIONS"
NO_MODEL = "NO_MODEL"
AUDIT_SAMPLE = "AUDIT_SAMPLE"


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float  # 0-100, as DetectCustomLabels reports it
    box: RatioBox | None = None  # None for labels without geometry


@dataclass(frozen=True)
class ReviewReason:
    code: str  # LOW_CONFIDENCE | NO_DETECTIONS | NO_MODEL | AUDIT_SAMPLE
    label: str | None = None
    confidence: float | None = None
    threshold: float | None = None

    @property
    def message(self) -> str:
        if self.code == LOW_CONFIDENCE:
            return (
                f"'{self.label}' confidence {self.confidence:.1f} is below the threshold {self.threshold:g}"
            )
        if self.code == NO_DETECTIONS:
            return "the model detected nothing"
        if self.code == NO_MODEL:
            return "no model is active yet: label the image to train the first one"
        return "selected for a random quality audit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "label": self.label,
            "confidence": self.confidence,
            "threshold": self.threshold,
            "message": self.message,
        }


@dataclass(frozen=True)
class ReviewDecision:
    needed: bool
    reasons: list[ReviewReason]
    audit_sample: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "needed": self.needed,
            "auditSample": self.audit_sample,
            "reasons": [reason.to_dict() for reason in self.reasons],
        }


def _check_threshold(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ValueError(f"{name} must be a number from 0 to 100, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ReviewConfig:
    default_threshold: float = 60.0
    label_thresholds: Mapping[str, float] = field(default_factory=dict)
    review_when_empty: bool = True
    audit_rate: float = 0.0

    def __post_init__(self) -> None:
        _check_threshold("default threshold", self.default_threshold)
        for label, value in self.label_thresholds.items():
            _check_threshold(f"threshold for label '{label}'", value)
        rate = self.audit_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"audit rate must be a number from 0 to 1, got {rate!r}")

    def threshold_for(self, label: str) -> float:
        return self.label_thresholds.get(label, self.default_threshold)


def audit_fraction(image_id: str) -> float:
    """Map an image identity to [0, 1) with a hash: the same image always gets the same number."""
    digest = sha256(f"labelloop-audit:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def decide_review(detections: Iterable[Detection], config: ReviewConfig, image_id: str) -> ReviewDecision:
    """Pure and deterministic: replays of the same image and detections give the same decision."""
    detections = list(detections)
    reasons = [
        ReviewReason(LOW_CONFIDENCE, d.label, d.confidence, config.threshold_for(d.label))
        for d in detections
        if d.confidence < config.threshold_for(d.label)
    ]
    if not detections and config.review_when_empty:
        reasons.append(ReviewReason(NO_DETECTIONS))
    audit_sample = audit_fraction(image_id) < config.audit_rate
    if audit_sample:
        reasons.append(ReviewReason(AUDIT_SAMPLE))
    return ReviewDecision(needed=bool(reasons), reasons=reasons, audit_sample=audit_sample)
