"""Object-detection evaluation the way Rekognition Custom Labels reports it.

Detections are matched to ground-truth boxes of the same label greedily, best confidence first, at an
IoU threshold (0.5). Each label gets the confidence threshold that maximises its F1 on the test set
(Rekognition's "assumed threshold"); precision, recall and F1 are reported at that threshold, with the
average precision (area under the interpolated precision/recall curve) and the average recall over IoU
thresholds 0.50-0.95. Aggregated metrics are the mean over labels present in the test set.
`EvaluationSummary.to_rekognition_summary` writes the training results summary file
(`EvaluationSummary-<project>-<version>.json`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_THRESHOLD = 50.0  # confidence used when a label has no detection to choose from
AVERAGE_RECALL_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
SUMMARY_VERSION = 1


class _DetectionLike(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def left(self) -> float: ...
    @property
    def top(self) -> float: ...
    @property
    def width(self) -> float: ...
    @property
    def height(self) -> float: ...


class _SampleLike(Protocol):
    @property
    def image(self) -> Image.Image: ...
    @property
    def boxes(self) -> list[tuple[str, tuple[int, int, int, int]]]: ...


class _DetectorLike(Protocol):
    labels: list[str]

    def detect(
        self, image: Image.Image, min_confidence: float = 0.0, max_results: int = 100
    ) -> Sequence[_DetectionLike]: ...


@dataclass(frozen=True)
class GroundTruth:
    """The labeled boxes of one test image (pixels: left, top, width, height)."""

    width: int
    height: int
    boxes: Sequence[tuple[str, tuple[int, int, int, int]]]


@dataclass(frozen=True)
class LabelMetrics:
    label: str
    threshold: float  # confidence 0-100 at which precision/recall/F1 are reported
    precision: float
    recall: float
    f1: float
    average_precision: float
    average_recall: float
    true_positives: int
    false_positives: int
    false_negatives: int
    testing_images: int  # test images holding at least one box of this label
    ground_truth_boxes: int


@dataclass(frozen=True)
class EvaluationSummary:
    precision: float
    recall: float
    f1: float
    average_precision: float
    average_recall: float
    per_label: dict[str, LabelMetrics]
    testing_images: int
    iou_threshold: float

    def thresholds(self) -> dict[str, float]:
        """Per-label confidence thresholds (0-100), the default when MinConfidence is omitted."""
        return {label: metrics.threshold for label, metrics in self.per_label.items()}

    def to_rekognition_summary(
        self, project_version_arn: str, *, training_images: int, evaluation_end: datetime | None = None
    ) -> dict[str, Any]:
        """The Rekognition Custom Labels training results summary JSON (object detection flavour).

        `Threshold` is a fraction (0-1) as in Rekognition's summary files; the confidences DetectCustomLabels
        returns are percentages.
        """
        ended = (evaluation_end or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        ranked = sorted(self.per_label.values(), key=lambda m: (-m.f1, m.label))
        return {
            "Version": SUMMARY_VERSION,
            "EvaluationDetails": {
                "ProjectVersionArn": project_version_arn,
                "EvaluationEndTimestamp": ended.isoformat(timespec="microseconds"),
                "Labels": list(self.per_label),
                "NumberOfTrainingImages": training_images,
                "NumberOfTestingImages": self.testing_images,
            },
            "AggregatedEvaluationResults": {
                "Metrics": {
                    "Precision": self.precision,
                    "Recall": self.recall,
                    "F1Score": self.f1,
                    "AveragePrecision": self.average_precision,
                    "AverageRecall": self.average_recall,
                },
            },
            "LabelEvaluationResults": [
                {
                    "Label": m.label,
                    "NumberOfTestingImages": m.testing_images,
                    "Metrics": {
                        "Threshold": round(m.threshold / 100.0, 6),
                        "Precision": m.precision,
                        "Recall": m.recall,
                        "F1Score": m.f1,
                    },
                }
                for m in ranked
            ],
        }


def evaluate(
    model: _DetectorLike, samples: Sequence[_SampleLike], iou_threshold: float = 0.5
) -> EvaluationSummary:
    """Runs the model on every test sample (no confidence floor) and scores its detections."""
    truths = [GroundTruth(s.image.width, s.image.height, list(s.boxes)) for s in samples]
    detections = [list(model.detect(s.image, min_confidence=0.0, max_results=100)) for s in samples]
    return evaluate_detections(truths, detections, model.labels, iou_threshold)


def evaluate_detections(
    truths: Sequence[GroundTruth],
    detections: Sequence[Sequence[_DetectionLike]],
    labels: Sequence[str],
    iou_threshold: float = 0.5,
) -> EvaluationSummary:
    """Scores detections (ratio boxes) against ground truth (pixel boxes), image by image."""
    if len(truths) != len(detections):
        raise ValueError(f"{len(truths)} ground-truth images but {len(detections)} detection lists")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be within (0, 1], got {iou_threshold}")
    per_label = {label: _label_metrics(label, truths, detections, iou_threshold) for label in labels}
    scored = [m for m in per_label.values() if m.ground_truth_boxes > 0]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    return EvaluationSummary(
        precision=mean([m.precision for m in scored]),
        recall=mean([m.recall for m in scored]),
        f1=mean([m.f1 for m in scored]),
        average_precision=mean([m.average_precision for m in scored]),
        average_recall=mean([m.average_recall for m in scored]),
        per_label=per_label,
        testing_images=len(truths),
        iou_threshold=iou_threshold,
    )


def _label_metrics(
    label: str,
    truths: Sequence[GroundTruth],
    detections: Sequence[Sequence[_DetectionLike]],
    iou_threshold: float,
) -> LabelMetrics:
    outcomes = _match_all(label, truths, detections, iou_threshold)
    n_truth = sum(1 for t in truths for box_label, _ in t.boxes if box_label == label)
    images = sum(1 for t in truths if any(box_label == label for box_label, _ in t.boxes))
    average_recall = float(
        np.mean(
            [_recall_at(_match_all(label, truths, detections, iou), n_truth) for iou in AVERAGE_RECALL_IOUS]
        )
    )
    if not outcomes or n_truth == 0:
        false_positives = len(outcomes)
        return LabelMetrics(
            label,
            DEFAULT_THRESHOLD,
            0.0,
            0.0,
            0.0,
            0.0,
            average_recall if n_truth else 0.0,
            0,
            false_positives,
            n_truth,
            images,
            n_truth,
        )
    confidences = np.array([c for c, _ in outcomes])
    hits = np.array([h for _, h in outcomes], dtype=np.float64)
    true_pos = np.cumsum(hits)
    false_pos = np.cumsum(1.0 - hits)
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / n_truth
    f1 = np.where(true_pos > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    # A threshold keeps every detection with confidence >= it: only the last of equal confidences counts.
    last_of_group = np.append(confidences[1:] != confidences[:-1], True)
    candidates = np.flatnonzero(last_of_group)
    best = int(candidates[np.argmax(f1[candidates])])
    tp, fp = int(true_pos[best]), int(false_pos[best])
    return LabelMetrics(
        label=label,
        threshold=float(confidences[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
        f1=float(f1[best]),
        average_precision=_average_precision(precision, recall),
        average_recall=average_recall,
        true_positives=tp,
        false_positives=fp,
        false_negatives=n_truth - tp,
        testing_images=images,
        ground_truth_boxes=n_truth,
    )


def _match_all(
    label: str,
    truths: Sequence[GroundTruth],
    detections: Sequence[Sequence[_DetectionLike]],
    iou_threshold: float,
) -> list[tuple[float, bool]]:
    """(confidence, is true positive) of every detection of `label`, best confidence first."""
    outcomes: list[tuple[float, bool]] = []
    for truth, image_detections in zip(truths, detections, strict=True):
        truth_boxes = np.array(
            [box for box_label, box in truth.boxes if box_label == label], dtype=np.float64
        ).reshape(-1, 4)
        mine = sorted((d for d in image_detections if d.label == label), key=lambda d: -d.confidence)
        used = np.zeros(len(truth_boxes), dtype=bool)
        for detection in mine:
            box = np.array(
                [
                    detection.left * truth.width,
                    detection.top * truth.height,
                    detection.width * truth.width,
                    detection.height * truth.height,
                ]
            )
            ious = np.where(used, -1.0, _ious(box, truth_boxes))
            hit = len(ious) > 0 and float(ious.max()) >= iou_threshold
            if hit:
                used[int(np.argmax(ious))] = True
            outcomes.append((float(detection.confidence), hit))
    outcomes.sort(key=lambda o: -o[0])
    return outcomes


def _ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0)
    left = np.maximum(box[0], boxes[:, 0])
    top = np.maximum(box[1], boxes[:, 1])
    right = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    bottom = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return inter / np.maximum(union, 1e-12)


def _recall_at(outcomes: list[tuple[float, bool]], n_truth: int) -> float:
    return sum(1 for _, hit in outcomes if hit) / n_truth if n_truth else 0.0


def _average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision/recall curve with the precision envelope (VOC, all points)."""
    recall_points = np.concatenate([[0.0], recall, [recall[-1]]])
    envelope = np.concatenate([[0.0], precision, [0.0]])
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]
    steps = np.flatnonzero(recall_points[1:] != recall_points[:-1])
    return float(np.sum((recall_points[steps + 1] - recall_points[steps]) * envelope[steps + 1]))
