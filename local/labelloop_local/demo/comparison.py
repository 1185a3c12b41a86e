"""What each model version detects on the fixed test images, side by side, for the demo's report.

The previous active model (the base model, asked while it still runs) and the retrained one each
answer DetectCustomLabels on every held-out test image; the report draws both next to the true
boxes and counts, per model, how many true boxes it found (IoU >= MATCH_IOU, same label).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelloop_core.geometry import RatioBox, ratio_to_pixels
from labelloop_local.formats.diff import iou
from labelloop_local.formats.groundtruth import Box

MATCH_IOU = 0.5
MAX_IMAGES = 20


@dataclass
class ModelAnswers:
    """One model version's detections on the test images (pixel boxes with confidence)."""

    version_name: str
    role: str  # "previous active model" | "retrained model"
    f1: float | None = None
    boxes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # test image name -> boxes

    def found(self, truth: dict[str, list[Box]]) -> tuple[int, int, int]:
        """(true boxes found, true boxes, detections) over the test images."""
        found = detections = 0
        for name, true_boxes in truth.items():
            answers = [_box(b) for b in self.boxes.get(name, [])]
            detections += len(answers)
            taken: set[int] = set()
            for true_box in true_boxes:
                best = max(
                    (
                        (iou(true_box, box), index)
                        for index, box in enumerate(answers)
                        if index not in taken and box.label == true_box.label
                    ),
                    default=(0.0, -1),
                )
                if best[0] >= MATCH_IOU:
                    taken.add(best[1])
                    found += 1
        return found, sum(len(boxes) for boxes in truth.values()), detections

    def summary(self, truth: dict[str, list[Box]]) -> dict[str, Any]:
        found, total, detections = self.found(truth)
        return {
            "version": self.version_name,
            "f1": self.f1,
            "trueBoxesFound": found,
            "trueBoxes": total,
            "detections": detections,
        }


def detect_test_images(
    rekognition: Any, bucket: str, prefix: str, entries: dict[str, Any], model_arn: str, min_confidence: float
) -> dict[str, list[dict[str, Any]]]:
    """DetectCustomLabels on `prefix + name` for each test image; boxes in the image's pixels."""
    answers: dict[str, list[dict[str, Any]]] = {}
    for name, entry in entries.items():
        response = rekognition.detect_custom_labels(
            ProjectVersionArn=model_arn,
            Image={"S3Object": {"Bucket": bucket, "Name": prefix + name}},
            MinConfidence=min_confidence,
        )
        boxes = []
        for label in response.get("CustomLabels", []):
            geometry = (label.get("Geometry") or {}).get("BoundingBox")
            if not geometry:
                continue
            ratio = RatioBox(geometry["Left"], geometry["Top"], geometry["Width"], geometry["Height"])
            pixels = ratio_to_pixels(ratio, entry.width, entry.height)
            boxes.append({"label": label["Name"], "confidence": label["Confidence"], **pixels.to_dict()})
        answers[name] = boxes
    return answers


def truth_of(entries: dict[str, Any]) -> dict[str, list[Box]]:
    return {
        name: [Box(label, round(b[0]), round(b[1]), round(b[2]), round(b[3])) for label, b in entry.boxes]
        for name, entry in entries.items()
    }


def section_html(
    answers: list[ModelAnswers],
    entries: dict[str, Any],
    card: Callable[[Path, int, int, list[tuple[str, list[dict[str, Any]], str]]], str],
) -> str:
    """The report's side-by-side section; `card` draws one image with several sets of boxes."""
    truth = truth_of(entries)
    rows = []
    for model in answers:
        found, total, detections = model.found(truth)
        f1 = "-" if model.f1 is None else f"{model.f1:.3f}"
        rows.append(
            f"<tr><th>{html.escape(model.role)}</th><td><code>{html.escape(model.version_name)}</code></td>"
            f"<td>F1 {f1}</td><td>found {found} of {total} true boxes (IoU ≥ {MATCH_IOU})</td>"
            f"<td>{detections} detections</td></tr>"
        )
    cards = []
    for name in list(entries)[:MAX_IMAGES]:
        entry = entries[name]
        truth_boxes = [
            {"label": b.label, "left": b.left, "top": b.top, "width": b.width, "height": b.height}
            for b in truth[name]
        ]
        panels = [
            (f"{m.role}: {len(m.boxes.get(name, []))} boxes", m.boxes.get(name, []), "model") for m in answers
        ]
        panels.append((f"true boxes: {len(truth_boxes)}", truth_boxes, "truth"))
        cards.append(card(entry.path, entry.width, entry.height, panels).replace("{name}", html.escape(name)))
    more = len(entries) - len(cards)
    note = f"<p>{more} more test images are not shown.</p>" if more > 0 else ""
    return f"""
<h2>The fixed test set: what each model detects</h2>
<p>{len(entries)} held-out test images (never reviewed, never trained on); every model version is scored on
them. Each row: the previous active model, the retrained model, and the true boxes.</p>
<table>{"".join(rows)}</table>
{"".join(cards)}
{note}"""


def _box(box: dict[str, Any]) -> Box:
    return Box(str(box["label"]), int(box["left"]), int(box["top"]), int(box["width"]), int(box["height"]))
