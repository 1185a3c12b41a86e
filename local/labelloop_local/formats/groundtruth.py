"""Ground Truth object-detection lines <-> `LabeledImage`, the one model every format converts through.

Reading validates each line with `labelloop_core.manifest.check_line` (what the merge applies);
building goes through `manifest.build_line` and is validated the same way, so an imported line is
one Rekognition accepts. Problems are reported to a `Problems` log as `where: reason`, where `where`
names the file and line (or element) they came from.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from labelloop_core.geometry import PixelBox
from labelloop_core.manifest import (
    METADATA_SUFFIX,
    SOURCE_REF,
    ClassMap,
    build_line,
    check_line,
    find_attribute,
)

# (where it came from: a file name or s3:// URI, line number, the line's text)
SourceLine = tuple[str, int, str]


class ConversionError(Exception):
    """The conversion cannot produce a complete output; the message says why (one line)."""


@dataclass(frozen=True)
class Box:
    label: str
    left: int
    top: int
    width: int
    height: int

    @property
    def pixels(self) -> PixelBox:
        return PixelBox(self.left, self.top, self.width, self.height)


@dataclass
class LabeledImage:
    """One image of a dataset: where it lives, its pixel size and its labeled boxes."""

    source_ref: str
    width: int
    height: int
    depth: int
    boxes: list[Box]
    where: str = ""  # file and line (or element) it was read from, for messages
    name: str = ""  # its path inside an exported dataset (set by `DatasetNames`)


@dataclass
class Problems:
    """Problems found in the inputs: each printed once (up to `shown`), all counted."""

    stream: TextIO | None = None  # None: sys.stderr at the time of printing
    shown: int = 50
    count: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.count += 1
        if self.count <= self.shown:
            print(f"error: {where}: {reason}", file=self.stream or sys.stderr)
        elif self.count == self.shown + 1:
            print(
                f"error: ... more problems; only the first {self.shown} are shown",
                file=self.stream or sys.stderr,
            )

    def note(self, where: str, text: str) -> None:
        self.notes.append(f"{where}: {text}")
        print(f"note: {where}: {text}", file=self.stream or sys.stderr)


class ClassIds:
    """The class ids of an export.

    With `labels` (the stack's Labels, or --labels-list) a label's id is its index there. Without, the
    Ground Truth class ids are kept as the lines write them, which must then agree across lines (a
    merged training manifest always does: the merge writes the canonical ids)."""

    def __init__(self, labels: ClassMap | None = None, by_name: bool = False) -> None:
        self.labels = labels
        self.by_name = by_name  # only the names matter (comparing datasets): ids may differ by line
        self.names: dict[int, str] = dict(enumerate(labels.labels)) if labels else {}
        self._ids: dict[str, int] = {name: i for i, name in self.names.items()}
        self._first: dict[int, str] = {}  # id -> where it was first seen (without labels)

    def id_of(self, name: str) -> int:
        return self._ids[name]

    def learn(self, class_map: dict[str, str], where: str) -> str | None:
        """Take in a line's class-map; the reason it conflicts with earlier lines, or None."""
        if self.labels is not None or self.by_name:
            return None
        for key, name in class_map.items():
            class_id = int(key)
            known = self.names.get(class_id)
            if known is None:
                other = self._ids.get(name)
                if other is not None:
                    return (
                        f"label {name!r} has class id {class_id} here but {other} in {self._first[other]}; "
                        "give the labels in class-id order (--labels-list or --stack)"
                    )
                self.names[class_id], self._ids[name], self._first[class_id] = name, class_id, where
            elif known != name:
                return (
                    f"class id {class_id} is {name!r} here but {known!r} in {self._first[class_id]}; "
                    "give the labels in class-id order (--labels-list or --stack)"
                )
        return None

    def ordered(self) -> list[tuple[int, str]]:
        return sorted(self.names.items())


def read_images(
    lines: Iterable[SourceLine], class_ids: ClassIds, problems: Problems
) -> Iterator[LabeledImage]:
    """The valid object-detection lines as images; every other non-blank line is a problem."""
    for origin, number, text in lines:
        if not text.strip():
            continue
        where = f"{origin}:{number}"
        try:
            line = json.loads(text)
        except ValueError as exc:
            problems.add(where, f"not valid JSON: {exc}")
            continue
        reasons = check_line(line, class_ids.labels)
        if reasons:
            problems.add(where, "; ".join(detail for _, detail in reasons[:3]))
            continue
        attribute = find_attribute(line)
        assert attribute is not None  # checked
        value, metadata = line[attribute], line[attribute + METADATA_SUFFIX]
        class_map: dict[str, str] = metadata["class-map"]
        conflict = class_ids.learn(class_map, where)
        if conflict:
            problems.add(where, conflict)
            continue
        size = value["image_size"][0]
        boxes = [
            Box(class_map[str(b["class_id"])], b["left"], b["top"], b["width"], b["height"])
            for b in value["annotations"]
        ]
        yield LabeledImage(line[SOURCE_REF], size["width"], size["height"], size["depth"], boxes, where)


def source_lines(origin: str, lines: Iterable[str], first: int = 1) -> Iterator[SourceLine]:
    for number, text in enumerate(lines, first):
        yield origin, number, text


class DatasetNames:
    """Each image's path inside the exported dataset: its file name (default) or its whole S3 key.

    Names must stay unique (two source-refs with the same file name need `keep_paths`), and, for
    formats that pair files by stem (YOLO labels, VOC annotations), so must the stems."""

    def __init__(self, keep_paths: bool, by_stem: bool) -> None:
        self.keep_paths = keep_paths
        self.by_stem = by_stem
        self._seen: dict[str, str] = {}  # name (or stem) -> where it was first used (file:line)

    def assign(self, image: LabeledImage) -> str | None:
        """Set `image.name`; the reason it cannot be used, or None."""
        key = image.source_ref[5:].split("/", 1)[1]
        name = key if self.keep_paths else key.rsplit("/", 1)[-1]
        if self.keep_paths and (name.startswith("/") or any(p in ("", ".", "..") for p in name.split("/"))):
            return f"S3 key {key!r} cannot be a path inside the dataset"
        token = stem(name) if self.by_stem else name
        earlier = self._seen.get(token)
        if earlier is not None:
            what = "file name stem" if self.by_stem else "file name"
            hint = "" if self.keep_paths else "; export with --keep-paths to keep the S3 keys"
            return f"{what} {token!r} of {image.source_ref} is already used by the image of {earlier}{hint}"
        self._seen[token] = image.where
        image.name = name
        return None


def stem(name: str) -> str:
    """`dir/a.jpg` -> `dir/a` (the part the label or annotation file is named after)."""
    head, _, tail = name.rpartition("/")
    base = tail.rsplit(".", 1)[0] if "." in tail.lstrip(".") else tail
    return f"{head}/{base}" if head else base


# --- import: images of another format -> Ground Truth lines -------------------------------------


@dataclass(frozen=True)
class ImportSettings:
    class_map: ClassMap
    attribute: str
    source_prefix: str  # s3://bucket/prefix/ ; a dataset-relative image name is appended
    job_name: str
    created: datetime


def to_line(image: LabeledImage, settings: ImportSettings) -> tuple[dict[str, Any] | None, str | None]:
    """The Ground Truth line of an imported image, validated as the merge validates; or the reason."""
    try:
        line = build_line(
            image.source_ref,
            [(box.label, box.pixels) for box in image.boxes],
            image.width,
            image.height,
            settings.class_map,
            settings.attribute,
            settings.job_name,
            settings.created,
            depth=image.depth,
        )
    except ValueError as exc:
        return None, str(exc)
    reasons = check_line(line, settings.class_map, settings.attribute)
    if reasons:
        return None, "; ".join(detail for _, detail in reasons[:3])
    return line, None


def write_lines(
    images: Iterable[LabeledImage],
    settings: ImportSettings,
    out: TextIO,
    problems: Problems,
    on_line: Callable[[LabeledImage], None] = lambda image: None,
) -> int:
    """Write each imported image as one Ground Truth line; returns how many were written."""
    written = 0
    refs: dict[str, str] = {}
    for image in images:
        earlier = refs.get(image.source_ref)
        if earlier is not None:
            problems.add(image.where, f"{image.source_ref} is also the image of {earlier}")
            continue
        refs[image.source_ref] = image.where
        line, reason = to_line(image, settings)
        if line is None:
            problems.add(image.where, reason or "invalid")
            continue
        out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        on_line(image)
        written += 1
    return written


def clamp_box(image_w: int, image_h: int, box: PixelBox) -> tuple[PixelBox | None, bool]:
    """The box within the image (None when nothing of it is inside), and whether it was cut."""
    from labelloop_core.geometry import clamp

    inside = clamp(box, image_w, image_h)
    return inside, inside != box
