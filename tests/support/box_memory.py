"""A deterministic stand-in for the local Custom Labels detector (same API, same Sample and Detection
types): training and detection take microseconds, so tests exercise the services' protocol, not the
CPU detector."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from PIL import Image

from labelloop_local.emulators import detector
from labelloop_local.emulators.detector import Detection

# -- a deterministic stand-in for the detector's model (same API, same Sample and Detection types) --------


class BoxMemoryModel:
    """Answers every image with the first training box of each label, as ratios, at 80% confidence."""

    def __init__(self, boxes: dict[str, list[float]]) -> None:
        self.boxes = boxes

    def detect(
        self, image: Image.Image, min_confidence: float = 0.0, max_results: int = 100
    ) -> list[Detection]:
        found = [Detection(label, 80.0, *ratios) for label, ratios in sorted(self.boxes.items())]
        return [d for d in found if d.confidence >= min_confidence][:max_results]

    def to_bytes(self) -> bytes:
        return json.dumps(self.boxes).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> BoxMemoryModel:
        return cls(json.loads(data))


class Evaluation:
    def __init__(self, labels: list[str], images: int) -> None:
        self.labels = labels
        self.images = images

    def thresholds(self) -> dict[str, float]:
        return {label: 50.0 for label in self.labels}

    def to_rekognition_summary(self, project_version_arn: str, *, training_images: int) -> dict[str, Any]:
        return {
            "Version": 1,
            "EvaluationDetails": {
                "ProjectVersionArn": project_version_arn,
                "NumberOfTrainingImages": training_images,
                "NumberOfTestingImages": self.images,
                "Labels": self.labels,
            },
            "AggregatedEvaluationResults": {"Metrics": {"F1Score": 0.75, "Precision": 0.8, "Recall": 0.7}},
            "LabelEvaluationResults": [
                {"Label": label, "Metrics": {"Threshold": 0.5, "F1Score": 0.75}} for label in self.labels
            ],
        }


class BoxMemoryDetector:
    Sample = detector.Sample
    Model = BoxMemoryModel

    @staticmethod
    def split(
        samples: Sequence[detector.Sample], test_fraction: float = 0.2, seed: int = 0
    ) -> tuple[list[detector.Sample], list[detector.Sample]]:
        cut = max(1, round(len(samples) * test_fraction))
        return list(samples[cut:]), list(samples[:cut])

    @staticmethod
    def train(
        samples: Sequence[detector.Sample], labels: Sequence[str], *, seed: int = 0, progress: Any = None
    ) -> BoxMemoryModel:
        boxes: dict[str, list[float]] = {}
        for sample in samples:
            width, height = sample.image.size
            for label, (left, top, box_w, box_h) in sample.boxes:
                boxes.setdefault(label, [left / width, top / height, box_w / width, box_h / height])
        if progress is not None:
            progress(f"remembered {len(boxes)} boxes")
        return BoxMemoryModel(boxes)

    @staticmethod
    def evaluate(model: BoxMemoryModel, samples: Sequence[detector.Sample]) -> Evaluation:
        return Evaluation(sorted(model.boxes), len(samples))
