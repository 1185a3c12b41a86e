"""Consolidation of several reviewers' answers for one image (DESIGN §9), both review backends.

Each reviewer draws boxes independently. Boxes of different reviewers with the same label are
matched by IoU (greedily, best overlap first; one box of each reviewer per object at most); an
object is kept when a strict majority of the reviewers drew it (2 of 2, 2 of 3), its coordinates are
the median of its members' edges, and its `confidence` (written as the manifest line's
`objects[].confidence`) is the share of reviewers who drew it times the mean IoU of their boxes with
the combined one. Objects drawn by a minority are dropped and counted: disagreement is recorded
(ledger, `LabelsAppended`), never silently discarded. One reviewer: every box is kept with
confidence 1, as before consolidation existed.

Pure and deterministic: the same answers (in the same order) always give the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from labelloop_core.geometry import PixelBox

MATCH_IOU = 0.5  # two boxes of one label are the same object when they overlap at least this much
LOW_AGREEMENT = 0.75  # an image whose agreement is below this is flagged for attention

LabeledBox = tuple[str, PixelBox]


@dataclass(frozen=True)
class ConsolidatedBox:
    label: str
    box: PixelBox
    votes: int  # reviewers who drew it
    confidence: float  # votes / reviewers x mean IoU of their boxes with `box`, 0-1


@dataclass(frozen=True)
class Consolidation:
    reviewers: int
    kept: tuple[ConsolidatedBox, ...]
    dropped: tuple[ConsolidatedBox, ...]  # objects drawn by a minority of the reviewers

    @property
    def boxes(self) -> list[LabeledBox]:
        return [(item.label, item.box) for item in self.kept]

    @property
    def confidences(self) -> list[float]:
        return [item.confidence for item in self.kept]

    @property
    def agreement(self) -> float:
        """Mean confidence over every object any reviewer drew (a dropped one counts 0); 1 when the
        reviewers agree that the image shows nothing."""
        objects = len(self.kept) + len(self.dropped)
        if objects == 0:
            return 1.0
        return round(sum(item.confidence for item in self.kept) / objects, 3)

    @property
    def low_agreement(self) -> bool:
        return self.reviewers > 1 and (bool(self.dropped) or self.agreement < LOW_AGREEMENT)


def iou(a: PixelBox, b: PixelBox) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    width = min(a.right, b.right) - max(a.left, b.left)
    height = min(a.bottom, b.bottom) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def consolidate(answers: Sequence[Sequence[LabeledBox]], match_iou: float = MATCH_IOU) -> Consolidation:
    """Consolidate the boxes of `answers` (one sequence of labeled boxes per reviewer)."""
    reviewers = len(answers)
    if reviewers == 0:
        raise ValueError("consolidation needs at least one answer")
    if reviewers == 1:
        return Consolidation(1, tuple(ConsolidatedBox(label, box, 1, 1.0) for label, box in answers[0]), ())
    nodes = [(reviewer, label, box) for reviewer, boxes in enumerate(answers) for label, box in boxes]
    clusters = _match(nodes, match_iou)
    kept: list[ConsolidatedBox] = []
    dropped: list[ConsolidatedBox] = []
    for members in clusters:
        item = _combine([nodes[index] for index in members], reviewers)
        (kept if item.votes * 2 > reviewers else dropped).append(item)
    return Consolidation(reviewers, tuple(kept), tuple(dropped))


def _match(nodes: list[tuple[int, str, PixelBox]], match_iou: float) -> list[list[int]]:
    """Clusters of node indices: the best-overlapping pairs first, never two boxes of one reviewer."""
    pairs = sorted(
        (
            (-iou(a[2], b[2]), i, j)
            for i, a in enumerate(nodes)
            for j, b in enumerate(nodes)
            if i < j and a[0] != b[0] and a[1] == b[1]
        ),
    )
    cluster_of = list(range(len(nodes)))
    members: dict[int, list[int]] = {index: [index] for index in range(len(nodes))}
    for negative_iou, i, j in pairs:
        if -negative_iou < match_iou:
            break
        first, second = cluster_of[i], cluster_of[j]
        if first == second:
            continue
        reviewers_first = {nodes[index][0] for index in members[first]}
        if reviewers_first & {nodes[index][0] for index in members[second]}:
            continue
        for index in members[second]:
            cluster_of[index] = first
        members[first].extend(members.pop(second))
    # In the order the reviewers drew them (first reviewer's boxes first).
    return sorted(sorted(found) for found in members.values())


def _combine(members: list[tuple[int, str, PixelBox]], reviewers: int) -> ConsolidatedBox:
    boxes = [box for _, _, box in members]
    left = round(median(box.left for box in boxes))
    top = round(median(box.top for box in boxes))
    right = round(median(box.right for box in boxes))
    bottom = round(median(box.bottom for box in boxes))
    combined = PixelBox(left, top, max(right - left, 1), max(bottom - top, 1))
    overlap = sum(iou(box, combined) for box in boxes) / len(boxes)
    confidence = round(len(members) / reviewers * overlap, 3)
    return ConsolidatedBox(members[0][1], combined, len(members), confidence)
