"""COCO object detection (cocodataset.org "Data format", section 1): one `annotations.json`.

Export streams: COCO is one JSON document, so images are written to it as they come while their
annotations go to a spool file beside it, appended once every image is written; categories (a
handful) close the document. No line or box is held; what grows with the manifest is only the
per-image name `DatasetNames` keeps to refuse duplicates (about 230 bytes an image).

- image: `{"id", "file_name", "width", "height", "coco_url"}`; `file_name` is the image's path in the
  dataset (`images/` beside the file when images are copied), `coco_url` its source-ref;
- annotation: `{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area", "iscrowd": 0}`, pixels;
- category: `{"id", "name", "supercategory"}`; id = Ground Truth class id + 1, because COCO's own ids
  start at 1 and detection frameworks read 0 as background. Import maps categories by name.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labelloop_core.geometry import PixelBox
from labelloop_local.formats.groundtruth import (
    Box,
    ClassIds,
    ConversionError,
    LabeledImage,
    Problems,
    clamp_box,
)

FILE_NAME = "annotations.json"
CATEGORY_OFFSET = 1  # COCO category id = Ground Truth class id + 1
SUPERCATEGORY = "object"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_string = json.encoder.encode_basestring  # a JSON string literal, as json.dumps writes it


class CocoWriter:
    """Writes `annotations.json` into `directory`, one image at a time."""

    def __init__(self, directory: Path, description: str) -> None:
        self.path = directory / FILE_NAME
        self._out = self.path.open("w", encoding="utf-8", newline="\n")
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", dir=directory)  # noqa: SIM115 (closed in finish)
        self.images = 0
        self.boxes = 0
        info = {
            "description": description,
            "version": "1.0",
            "year": datetime.now(UTC).year,
            "contributor": "labelloop",
            "date_created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self._out.write('{"info":' + _dump(info) + ',"licenses":[],"images":[')

    def add(self, image: LabeledImage, class_ids: ClassIds) -> None:
        self.images += 1
        # Written by hand (what json.dumps would write, compact): a million lines make the difference.
        self._out.write(
            f'{"" if self.images == 1 else ","}\n{{"id":{self.images},"file_name":{_string(image.name)},'
            f'"width":{image.width},"height":{image.height},"coco_url":{_string(image.source_ref)}}}'
        )
        rows = []
        for box in image.boxes:
            self.boxes += 1
            rows.append(
                f'{"" if self.boxes == 1 else ","}\n{{"id":{self.boxes},"image_id":{self.images},'
                f'"category_id":{class_ids.id_of(box.label) + CATEGORY_OFFSET},'
                f'"bbox":[{box.left},{box.top},{box.width},{box.height}],'
                f'"area":{box.width * box.height},"iscrowd":0}}'
            )
        self._spool.write("".join(rows))

    def finish(self, class_ids: ClassIds) -> None:
        self._out.write('\n],"annotations":[')
        self._spool.seek(0)
        shutil.copyfileobj(self._spool, self._out, 1 << 20)
        self._spool.close()
        categories = [
            {"id": class_id + CATEGORY_OFFSET, "name": name, "supercategory": SUPERCATEGORY}
            for class_id, name in class_ids.ordered()
        ]
        self._out.write('\n],"categories":' + _dump(categories) + "}\n")
        self._out.close()

    def close(self) -> None:
        self._spool.close()
        self._out.close()


# --- import ----------------------------------------------------------------------------------------


class CocoDataset:
    """A COCO file read for import: its categories (id order) and its images with their boxes."""

    def __init__(self, path: Path, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConversionError(f"{path}: not a COCO JSON document: {exc}") from None
        if not isinstance(document, dict) or not all(
            isinstance(document.get(key), list) for key in ("images", "annotations", "categories")
        ):
            raise ConversionError(f"{path}: a COCO file needs the lists images, annotations and categories")
        self.categories = self._categories(document["categories"])
        self._images = document["images"]
        self._annotations = document["annotations"]
        self.crowd = 0

    def _categories(self, entries: list[Any]) -> dict[int, str]:
        found: dict[int, str] = {}
        for index, entry in enumerate(entries):
            where = f"{self.path}: categories[{index}]"
            if not isinstance(entry, dict) or not _is_int(entry.get("id")) or not _name(entry.get("name")):
                self.problems.add(where, "a category needs an integer id and a non-empty name")
            elif entry["id"] in found:
                self.problems.add(where, f"category id {entry['id']} is used twice")
            else:
                found[int(entry["id"])] = entry["name"].strip()
        return dict(sorted(found.items()))

    def images(self, source_prefix: str) -> Iterator[LabeledImage]:
        boxes = self._boxes_by_image()
        seen: set[Any] = set()
        for index, entry in enumerate(self._images):
            where = f"{self.path}: images[{index}]"
            if (
                not isinstance(entry, dict)
                or not _is_int(entry.get("id"))
                or not _name(entry.get("file_name"))
            ):
                self.problems.add(where, "an image needs an integer id and a file_name")
                continue
            width, height = _positive(entry.get("width")), _positive(entry.get("height"))
            if width is None or height is None:
                self.problems.add(
                    where,
                    f"width {entry.get('width')!r}, height {entry.get('height')!r}: positive integers needed",
                )
                continue
            if entry["id"] in seen:
                self.problems.add(where, f"image id {entry['id']} is used twice")
                continue
            seen.add(entry["id"])
            where = f"{where} ({entry['file_name']})"
            image_boxes = [
                box
                for box in (
                    self._box(number, raw, width, height) for number, raw in boxes.get(entry["id"], [])
                )
                if box is not None
            ]
            name = entry["file_name"].removeprefix("./")
            yield LabeledImage(source_prefix + name, width, height, 3, image_boxes, where, name)

    def _boxes_by_image(self) -> dict[Any, list[tuple[int, dict[str, Any]]]]:
        grouped: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
        image_ids = {entry.get("id") for entry in self._images if isinstance(entry, dict)}
        for index, entry in enumerate(self._annotations):
            where = f"{self.path}: annotations[{index}]"
            if not isinstance(entry, dict):
                self.problems.add(where, "an annotation must be an object")
            elif entry.get("image_id") not in image_ids:
                self.problems.add(where, f"image_id {entry.get('image_id')!r} is not an image of the file")
            elif entry.get("category_id") not in self.categories:
                self.problems.add(
                    where, f"category_id {entry.get('category_id')!r} is not a category of the file"
                )
            elif entry.get("iscrowd") in (1, True):
                self.crowd += 1  # a crowd region labels many objects at once: no single box to train on
            else:
                grouped.setdefault(entry["image_id"], []).append((index, entry))
        if self.crowd:
            self.problems.note(str(self.path), f"{self.crowd} crowd annotation(s) (iscrowd 1) skipped")
        return grouped

    def _box(self, index: int, entry: dict[str, Any], width: int, height: int) -> Box | None:
        where = f"{self.path}: annotations[{index}]"
        bbox = entry.get("bbox")
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
        ):
            self.problems.add(where, f"bbox {bbox!r} must be [x, y, width, height] numbers")
            return None
        inside, cut = clamp_box(width, height, PixelBox.from_numbers(*bbox))
        if inside is None:
            self.problems.add(where, f"bbox {bbox} has no area inside the {width}x{height} image")
            return None
        if cut:
            self.problems.note(where, f"bbox {bbox} cut to the {width}x{height} image")
        return Box(
            self.categories[entry["category_id"]], inside.left, inside.top, inside.width, inside.height
        )


def _is_int(value: object) -> bool:
    return (type(value) is int) or (type(value) is float and value.is_integer())


def _positive(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and _is_int(value) and value > 0 else None


def _name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())
