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
    sides = _Side(old, "removed"), _Side(new, "added")
    while not all(side.done for side in sides):
        for side, other in (sides, sides[::-1]):
            image = None if side.done else next(side.images, None)
            if image is None:
                side.done = True
                continue
            side.seen += 1
            twin = other.waiting.pop(image.source_ref, None)
            if twin is not None:
                yield from _pair(*((image, twin) if side is sides[0] else (twin, image)), summary, threshold)
            elif other.done:
                yield _alone(image, side.kind, summary)
            else:
                side.waiting[image.source_ref] = image
                summary.peak_waiting = max(summary.peak_waiting, sum(len(s.waiting) for s in sides))
    summary.images_a, summary.images_b = sides[0].seen, sides[1].seen
    for side in sides:
        for image in side.waiting.values():
            yield _alone(image, side.kind, summary)


class _Side:
    """One manifest of a diff: its images, those waiting for their twin, and what one alone means."""

    def __init__(self, images: Iterable[LabeledImage], kind: str) -> None:
        self.images: Iterator[LabeledImage] = iter(images)
        self.kind = kind  # removed (only in the old one) | added (only in the new one)
        self.waiting: dict[str, LabeledImage] = {}
        self.done = False
        self.seen = 0


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
