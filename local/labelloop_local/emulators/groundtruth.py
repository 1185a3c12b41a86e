"""Ground Truth object-detection manifest lines as Rekognition Custom Labels checks them on import.

Kept independent from `labelloop_core.manifest` on purpose: the local service plays AWS, and AWS
must catch what a bug in the project's own manifest code lets through.

As Rekognition does: a malformed line is invalid (and counts toward the 20% limit of an import); an
annotation whose box is not a positive box inside the image is dropped on its own
(ERROR_INVALID_BOUNDING_BOX) and the rest of the line is kept; a line with no (valid) annotation is
not an error (WARNING_NO_ANNOTATIONS): it does not count toward the limit and is not trained on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, cast

MAX_BOXES_PER_IMAGE = 50
MAX_INVALID_FRACTION = 0.2  # Rekognition fails an import when more than 20% of the lines are invalid
OBJECT_DETECTION_TYPE = "groundtruth/object-detection"

PixelBox = tuple[float, float, float, float]


INVALID_BOUNDING_BOX = "ERROR_INVALID_BOUNDING_BOX"
NO_ANNOTATIONS = "WARNING_NO_ANNOTATIONS"


@dataclass(frozen=True)
class ManifestEntry:
    source_ref: str
    width: int
    height: int
    boxes: list[tuple[str, PixelBox]]
    dropped: tuple[str, ...] = ()  # ERROR_INVALID_BOUNDING_BOX messages of the annotations left out

    @property
    def labels(self) -> set[str]:
        return {label for label, _ in self.boxes}

    @property
    def trainable(self) -> bool:
        """False for a WARNING_NO_ANNOTATIONS line: imported, not trained on."""
        return bool(self.boxes)


class InvalidLine(ValueError):
    """A manifest line Rekognition would reject; the message says why."""


class _InvalidBox(ValueError):
    """An annotation Rekognition drops on its own, keeping the rest of the line."""


def source_ref_of(text: str) -> str | None:
    """The line's `source-ref`, or None when the line is not a JSON object with one."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    ref = doc.get("source-ref") if isinstance(doc, dict) else None
    return ref if isinstance(ref, str) and ref else None


def parse_line(text: str) -> ManifestEntry:
    """Parse and validate one line; InvalidLine names the first problem."""
    try:
        doc = json.loads(text)
    except ValueError as error:
        raise InvalidLine(f"not valid JSON: {error}") from error
    if not isinstance(doc, dict):
        raise InvalidLine("not a JSON object")
    source_ref = doc.get("source-ref")
    if not isinstance(source_ref, str) or not source_ref.startswith("s3://") or "/" not in source_ref[5:]:
        raise InvalidLine(f"source-ref must be an s3://bucket/key URI, got {source_ref!r}")
    attribute = _label_attribute(doc)
    label_doc, metadata = doc[attribute], doc[f"{attribute}-metadata"]
    if metadata.get("type") != OBJECT_DETECTION_TYPE:
        raise InvalidLine(
            f"{attribute}-metadata.type must be {OBJECT_DETECTION_TYPE!r}, got {metadata.get('type')!r}"
        )
    if "creation-date" not in metadata:
        raise InvalidLine(f"{attribute}-metadata has no creation-date")
    width, height = _image_size(label_doc, attribute)
    annotations = label_doc.get("annotations")
    if not isinstance(annotations, list):
        raise InvalidLine(f"{attribute}.annotations must be a list")
    if len(annotations) > MAX_BOXES_PER_IMAGE:
        raise InvalidLine(f"{len(annotations)} boxes, more than {MAX_BOXES_PER_IMAGE} per image")
    objects = metadata.get("objects")
    if not isinstance(objects, list) or len(objects) != len(annotations):
        raise InvalidLine(f"{attribute}-metadata.objects must have one entry per annotation")
    class_map = metadata.get("class-map")
    if not isinstance(class_map, dict):
        raise InvalidLine(f"{attribute}-metadata.class-map must be an object")
    boxes, dropped = [], []
    for index, annotation in enumerate(annotations):
        try:
            boxes.append(_box(annotation, class_map, width, height, index))
        except _InvalidBox as error:
            dropped.append(f"{INVALID_BOUNDING_BOX}: {error}")
    return ManifestEntry(source_ref, width, height, boxes, tuple(dropped))


def _label_attribute(doc: dict[str, Any]) -> str:
    for key, value in doc.items():
        if key == "source-ref" or key.endswith("-metadata"):
            continue
        if isinstance(value, dict) and isinstance(doc.get(f"{key}-metadata"), dict):
            return key
    raise InvalidLine("no label attribute with a matching -metadata object")


def _image_size(label_doc: dict[str, Any], attribute: str) -> tuple[int, int]:
    sizes = label_doc.get("image_size")
    if not isinstance(sizes, list) or len(sizes) != 1 or not isinstance(sizes[0], dict):
        raise InvalidLine(f"{attribute}.image_size must be a list with one {{width, height, depth}}")
    size = sizes[0]
    width, height = size.get("width"), size.get("height")
    if not _positive_int(width) or not _positive_int(height) or "depth" not in size:
        raise InvalidLine(
            f"{attribute}.image_size needs positive integer width, height and a depth, got {size}"
        )
    return cast(int, width), cast(int, height)


def _box(
    annotation: Any, class_map: dict[str, Any], width: int, height: int, index: int
) -> tuple[str, PixelBox]:
    where = f"annotation {index}"
    if not isinstance(annotation, dict):
        raise InvalidLine(f"{where} is not an object")
    class_id = annotation.get("class_id")
    label = class_map.get(str(class_id))
    if not isinstance(label, str) or not label:
        raise InvalidLine(f"{where}: class_id {class_id!r} is not in the class-map")
    values = [annotation.get(name) for name in ("left", "top", "width", "height")]
    if not all(_number(value) for value in values):
        raise InvalidLine(f"{where}: left, top, width and height must be numbers, got {values}")
    left, top, box_width, box_height = (float(cast(float, value)) for value in values)
    if box_width <= 0 or box_height <= 0:
        raise _InvalidBox(f"{where}: width and height must be positive")
    if left < 0 or top < 0 or left + box_width > width or top + box_height > height:
        raise _InvalidBox(f"{where}: box {values} is not inside the {width}x{height} image")
    return label, (left, top, box_width, box_height)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
