"""Model evaluation: read the Rekognition Custom Labels training summary and decide on promotion.

Summary file (EvaluationSummary-<project>-<version>.json): `AggregatedEvaluationResults` holds
Precision, Recall and F1Score, either inside `Metrics` (format reference) or directly (the SDK example);
`LabelEvaluationResults[]` holds `{"Label": name, "Metrics": {"F1Score", "Precision", "Recall", ...}}`.

Promotion rule (`decide_promotion`), with `margin` and `min_f1` in F1 points (0-1):
- a candidate below the absolute floor `min_f1` is never promoted, even with no active model (a first
  model with F1 0.0 would pre-draw noise for every reviewer);
- no active model metrics: promote;
- otherwise promote only if candidate F1 >= active F1 + margin (with margin 0: strictly greater, so an
  equal model does not cause a paid restart), and no label evaluated for the active model loses more
  than `margin` F1 or disappears from the candidate's evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from labelloop_core.errors import InvalidSummary

_EPSILON = 1e-9  # float noise: 0.8 + 0.05 must count as reaching 0.85


def format_f1(value: float | None, signed: bool = False) -> str:
    """An F1 (or F1 difference) as every message and report prints it: three decimals, halves
    rounded up from the number as written (0.8525 → 0.853), `n/a` when unknown."""
    if value is None:
        return "n/a"
    rounded = Decimal(repr(float(value))).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    return f"{rounded:+}" if signed else str(rounded)


@dataclass(frozen=True)
class EvaluationMetrics:
    f1: float
    precision: float | None = None
    recall: float | None = None
    per_label: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "perLabel": dict(self.per_label),
        }


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    candidate_f1: float
    active_f1: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "candidateF1": self.candidate_f1,
            "activeF1": self.active_f1,
        }


def _score(value: object, where: str, required: bool) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidSummary(f"{where} must be a number, got {value!r}")
    if not 0 <= value <= 1:
        raise InvalidSummary(f"{where} must be between 0 and 1, got {value!r}")
    return float(value)


def parse_summary(doc: Mapping[str, Any]) -> EvaluationMetrics:
    """Metrics from an evaluation summary; raises InvalidSummary when the overall F1 is missing.
    Labels reported without an F1 score (no test images) are left out of `per_label`."""
    if not isinstance(doc, Mapping):
        raise InvalidSummary("the evaluation summary is not a JSON object")
    aggregated = doc.get("AggregatedEvaluationResults")
    if not isinstance(aggregated, Mapping):
        raise InvalidSummary("the evaluation summary has no AggregatedEvaluationResults")
    metrics = aggregated.get("Metrics", aggregated)
    if not isinstance(metrics, Mapping):
        raise InvalidSummary("AggregatedEvaluationResults.Metrics is not an object")
    f1 = _score(metrics.get("F1Score"), "AggregatedEvaluationResults F1Score", required=True)
    assert f1 is not None
    precision = _score(metrics.get("Precision"), "AggregatedEvaluationResults Precision", required=False)
    recall = _score(metrics.get("Recall"), "AggregatedEvaluationResults Recall", required=False)
    return EvaluationMetrics(f1, precision, recall, _per_label(doc.get("LabelEvaluationResults", [])))


def _per_label(results: object) -> dict[str, float]:
    if not isinstance(results, list):
        raise InvalidSummary("LabelEvaluationResults must be a list")
    per_label: dict[str, float] = {}
    for number, entry in enumerate(results, 1):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("Label"), str):
            raise InvalidSummary(f"LabelEvaluationResults entry {number} has no Label name")
        metrics = entry.get("Metrics") or {}
        if not isinstance(metrics, Mapping):
            raise InvalidSummary(f"LabelEvaluationResults entry {number} Metrics is not an object")
        score = _score(metrics.get("F1Score"), f"F1Score of label {entry['Label']!r}", required=False)
        if score is not None:
            per_label[entry["Label"]] = score
    return per_label


def decide_promotion(
    candidate: EvaluationMetrics, active: EvaluationMetrics | None, margin: float, min_f1: float = 0.0
) -> PromotionDecision:
    """Apply the module's promotion rule; the reason says which numbers decided, either way."""
    for name, value in (("promotion margin", margin), ("minimum F1", min_f1)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    if candidate.f1 + _EPSILON < min_f1:
        floor = f"candidate F1 {format_f1(candidate.f1)} is below the minimum {format_f1(min_f1)}"
        return PromotionDecision(
            False, f"{floor} (MinF1ToPromote)", candidate.f1, active.f1 if active else None
        )
    if active is None:
        return PromotionDecision(
            True,
            f"no active model to compare with; candidate F1 {format_f1(candidate.f1)}",
            candidate.f1,
            None,
        )

    def reject(reason: str) -> PromotionDecision:
        return PromotionDecision(False, reason, candidate.f1, active.f1)

    gain = candidate.f1 - active.f1
    change = format_f1(gain, signed=True)
    overall = f"candidate F1 {format_f1(candidate.f1)} vs active {format_f1(active.f1)} ({change})"
    if gain + _EPSILON < margin or (margin == 0 and gain <= _EPSILON):
        needed = f"at least +{format_f1(margin)}" if margin > 0 else "an improvement"
        return reject(f"{overall}: {needed} is required")
    for label, active_f1 in sorted(active.per_label.items()):
        if label not in candidate.per_label:
            return reject(f"{overall}, but label {label!r} has no F1 in the candidate's evaluation")
        drop = active_f1 - candidate.per_label[label]
        if drop > margin + _EPSILON:
            fell = f"{format_f1(active_f1)} -> {format_f1(candidate.per_label[label])}"
            return reject(
                f"{overall}, but label {label!r} F1 fell {fell}, more than the margin {format_f1(margin)}"
            )
    return PromotionDecision(
        True,
        f"{overall} meets the margin {format_f1(margin)}; no label lost more than the margin",
        candidate.f1,
        active.f1,
    )
