"""What changed between two training manifests, image by image and box by box.

Both manifests are streamed side by side and matched by source-ref; an image waits in memory only
until its twin turns up, so two merges of the same history (the next one is the last one plus new and
replaced lines, in the same order) are compared in near-constant memory. Boxes of an image that
appear in both unchanged are equal; the rest are paired by IoU (same label, best pairs first, at
least `iou` overlap) as moved; what stays unpaired was deleted (only in A) or added (only in B).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from labelloop_local.formats.groundtruth import Box, LabeledImage

DEFAULT_IOU = 0.3


@dataclass
class ImageChange:
    source_ref: str
    kind: str  # added | removed | changed
    boxes: int = 0  # boxes of an added or removed image
    moved: list[tuple[Box, Box, float]] = field(default_factory=list)
    added: list[Box] = field(default_factory=list)
    deleted: list[Box] = field(default_factory=list)
    resized: tuple[tuple[int, int], tuple[int, int]] | None = None


@dataclass
class DiffSummary:
    images_a: int = 0
    images_b: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    boxes_moved: int = 0
    boxes_added: int = 0
    boxes_deleted: int = 0
    peak_waiting: int = 0  # most images held at once, waiting for their twin (the memory the diff needs)

    def count(self, change: ImageChange) -> None:
        setattr(self, change.kind, getattr(self, change.kind) + 1)
        self.boxes_moved += len(change.moved)
        self.boxes_added += len(change.added)
        self.boxes_deleted += len(change.deleted)


def iou(a: Box, b: Box) -> float:
    width = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    height = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    overlap = width * height
    return overlap / (a.width * a.height + b.width * b.height - overlap)


def compare(old: LabeledImage, new: LabeledImage, threshold: float = DEFAULT_IOU) -> ImageChange | None:
    """The box changes of one image, or None when it is the same in both."""
    common = Counter(old.boxes) & Counter(new.boxes)
    deleted = list((Counter(old.boxes) - common).elements())
    added = list((Counter(new.boxes) - common).elements())
    resized = None
    if (old.width, old.height) != (new.width, new.height):
        resized = ((old.width, old.height), (new.width, new.height))
    if not deleted and not added and resized is None:
        return None
    pairs = sorted(
        ((iou(a, b), i, j) for i, a in enumerate(deleted) for j, b in enumerate(added) if a.label == b.label),
        key=lambda pair: (-pair[0], pair[1], pair[2]),
    )
    moved: list[tuple[Box, Box, float]] = []
    used_old: set[int] = set()
    used_new: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < threshold or i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        moved.append((deleted[i], added[j], overlap))
    return ImageChange(
        old.source_ref,
        "changed",
        moved=moved,
        added=[box for j, box in enumerate(added) if j not in used_new],
        deleted=[box for i, box in enumerate(deleted) if i not in used_old],
        resized=resized,
    )


def diff(
    old: Iterable[LabeledImage],
    new: Iterable[LabeledImage],
    summary: DiffSummary,
    threshold: float = DEFAULT_IOU,
) -> Iterator[ImageChange]:
    """Every change from `old` to `new`, counted into `summary`, streaming both side by side."""
    waiting_old: dict[str, LabeledImage] = {}
    waiting_new: dict[str, LabeledImage] = {}
    old_items, new_items = iter(old), iter(new)
    old_done = new_done = False
    while not (old_done and new_done):
        if not old_done:
            image = next(old_items, None)
            if image is None:
                old_done = True
            else:
                summary.images_a += 1
                twin = waiting_new.pop(image.source_ref, None)
                if twin is not None:
                    yield from _pair(image, twin, summary, threshold)
                elif new_done:
                    yield _alone(image, "removed", summary)
                else:
                    waiting_old[image.source_ref] = image
                    summary.peak_waiting = max(summary.peak_waiting, len(waiting_old) + len(waiting_new))
        if not new_done:
            image = next(new_items, None)
            if image is None:
                new_done = True
            else:
                summary.images_b += 1
                twin = waiting_old.pop(image.source_ref, None)
                if twin is not None:
                    yield from _pair(twin, image, summary, threshold)
                elif old_done:
                    yield _alone(image, "added", summary)
                else:
                    waiting_new[image.source_ref] = image
                    summary.peak_waiting = max(summary.peak_waiting, len(waiting_old) + len(waiting_new))
    for image in waiting_old.values():
        yield _alone(image, "removed", summary)
    for image in waiting_new.values():
        yield _alone(image, "added", summary)


def _pair(
    old: LabeledImage, new: LabeledImage, summary: DiffSummary, threshold: float
) -> Iterator[ImageChange]:
    change = compare(old, new, threshold)
    if change is None:
        summary.unchanged += 1
        return
    summary.count(change)
    yield change


def _alone(image: LabeledImage, kind: str, summary: DiffSummary) -> ImageChange:
    change = ImageChange(image.source_ref, kind, boxes=len(image.boxes))
    summary.count(change)
    return change
