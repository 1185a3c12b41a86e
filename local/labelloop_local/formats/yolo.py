"""Ultralytics YOLO detection datasets (docs.ultralytics.com/datasets/detect).

Layout written (and read):
```
data.yaml            names in class-id order (`names: {0: ...}`), nc, train/val image folders
images/<name>        the images (with --images)
labels/<stem>.txt    one per image (empty: no objects): `class cx cy w h` per object, normalized
image-sources.csv    labelloop's sidecar: image, source_ref, width, height, depth (ignored by Ultralytics)
```
`data.yaml` has no `path:` key: Ultralytics then takes the folder of data.yaml as the dataset root
(a relative `path` would be resolved against its own datasets directory). A label file is found the
way Ultralytics finds it: the last `/images/` of the image path becomes `/labels/`, the suffix `.txt`.
Both splits name the one `images` folder: labelloop keeps its test set apart (TestManifestKey).

Rounding: normalized values are written with DIGITS decimals, an error of at most 0.5e-DIGITS each.
Back in pixels an edge is `cx*W -/+ w*W/2`, off by at most 1.5 * 0.5e-DIGITS * W before rounding to a
whole pixel, so every box comes back exactly while that stays below half a pixel: for image sides
up to `exact_side_limit()` (666,666 px with 6 digits; Rekognition allows at most 4096).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from labelloop_core.errors import InvalidImage
from labelloop_core.geometry import PixelBox
from labelloop_core.imageinfo import HEADER_BYTES, probe
from labelloop_local.formats.groundtruth import (
    Box,
    ClassIds,
    ConversionError,
    LabeledImage,
    Problems,
    clamp_box,
    stem,
)

DIGITS = 6
DATA_YAML = "data.yaml"
SIDECAR = "image-sources.csv"
SIDECAR_FIELDS = ("image", "source_ref", "width", "height", "depth")
IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}  # Ultralytics reads more
TOLERANCE = 1e-6  # normalized values this far outside [0, 1] are rounding, not errors


def exact_side_limit(digits: int = DIGITS) -> int:
    """The largest image side (pixels) for which every box survives the round trip exactly."""
    return math.ceil(10**digits / 1.5) - 1


def normalize(box: Box, width: int, height: int, digits: int = DIGITS) -> tuple[str, str, str, str]:
    """(cx, cy, w, h) as text: centre and size over the image size, `digits` decimals."""
    values = (
        (box.left + box.width / 2) / width,
        (box.top + box.height / 2) / height,
        box.width / width,
        box.height / height,
    )
    cx, cy, w, h = (f"{value:.{digits}f}" for value in values)
    return cx, cy, w, h


def denormalize(cx: float, cy: float, w: float, h: float, width: int, height: int) -> PixelBox:
    """Whole pixels again (edges rounded, so neighbouring boxes stay neighbours)."""
    return PixelBox.from_numbers((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)


def label_path(image_path: str) -> str:
    """Ultralytics' rule: the last `/images/` becomes `/labels/`, the suffix `.txt`."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return labels.join(image_path.rsplit(images, 1)).rsplit(".", 1)[0] + ".txt"


class YoloWriter:
    def __init__(self, directory: Path, digits: int = DIGITS) -> None:
        self.directory = directory
        self.digits = digits
        self.images = 0
        self.boxes = 0
        (directory / "labels").mkdir()
        self._sidecar_file = (directory / SIDECAR).open("w", encoding="utf-8", newline="")
        self._sidecar = csv.writer(self._sidecar_file, lineterminator="\n")
        self._sidecar.writerow(SIDECAR_FIELDS)

    def add(self, image: LabeledImage, class_ids: ClassIds) -> None:
        rows = [
            " ".join(
                (str(class_ids.id_of(box.label)), *normalize(box, image.width, image.height, self.digits))
            )
            + "\n"
            for box in image.boxes
        ]
        path = self.directory / "labels" / (stem(image.name) + ".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="\n") as out:
            out.writelines(rows)
        self._sidecar.writerow(
            (f"images/{image.name}", image.source_ref, image.width, image.height, image.depth)
        )
        self.images += 1
        self.boxes += len(rows)

    def finish(self, class_ids: ClassIds) -> None:
        self._sidecar_file.close()
        names = class_ids.ordered()
        with (self.directory / DATA_YAML).open("w", encoding="utf-8", newline="\n") as out:
            _write_data_yaml(out, names)

    def close(self) -> None:
        self._sidecar_file.close()


def _write_data_yaml(out: TextIO, names: list[tuple[int, str]]) -> None:
    out.write("# Ultralytics YOLO detection dataset written by labelloop.\n")
    out.write("# No `path:`: the dataset root is this file's folder. One set of images for both splits.\n")
    out.write("train: images\nval: images\n")
    out.write(f"nc: {len(names)}\n")
    out.write("names:\n")
    for class_id, name in names:
        out.write(f"  {class_id}: {json.dumps(name, ensure_ascii=False)}\n")  # a JSON string is YAML


# --- import ----------------------------------------------------------------------------------------


class YoloDataset:
    """A YOLO dataset read for import: `data.yaml` names and every image with its label file."""

    def __init__(self, path: Path, problems: Problems) -> None:
        self.yaml_path = path / DATA_YAML if path.is_dir() else path
        self.root = self.yaml_path.parent
        self.problems = problems
        if not self.yaml_path.is_file():
            raise ConversionError(f"{self.yaml_path}: no such file (a YOLO dataset has a data.yaml)")
        self.names = self._names()

    def _names(self) -> dict[int, str]:
        import yaml

        try:
            data = yaml.safe_load(self.yaml_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConversionError(f"{self.yaml_path}: not YAML: {' '.join(str(exc).split())}") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not isinstance(names, dict) or not names:
            raise ConversionError(
                f"{self.yaml_path}: names: the class names are missing (a list or {{id: name}})"
            )
        result: dict[int, str] = {}
        for key, name in names.items():
            if type(key) is not int or key < 0 or not isinstance(name, str) or not name.strip():
                raise ConversionError(f"{self.yaml_path}: names: {key!r}: {name!r} is not `id: name`")
            result[key] = name.strip()
        return dict(sorted(result.items()))

    def images(self, source_prefix: str) -> Iterator[LabeledImage]:
        for image_path, where, size in self._entries():
            relative = _after_images(image_path)
            if relative is None:
                self.problems.add(where, "the image is not inside an images/ folder")
                continue
            if size is None:
                size = self._probe(image_path, where)
                if size is None:
                    continue
            width, height, depth = size
            labels = Path(label_path(str(image_path)))
            boxes = self._boxes(labels, width, height) if labels.is_file() else []
            if boxes is None:
                continue
            yield LabeledImage(source_prefix + relative, width, height, depth, boxes, where, relative)

    def _entries(self) -> Iterator[tuple[Path, str, tuple[int, int, int] | None]]:
        """(image path, where, size or None): from the sidecar when there is one, else images/ below root."""
        sidecar = self.root / SIDECAR
        if sidecar.is_file():
            with sidecar.open(encoding="utf-8", newline="") as handle:
                for number, row in enumerate(csv.DictReader(handle), 2):
                    where = f"{sidecar}:{number}"
                    try:
                        size = (int(row["width"]), int(row["height"]), int(row["depth"] or 3))
                        image = self.root / row["image"]
                    except (KeyError, TypeError, ValueError):
                        self.problems.add(where, f"a row needs {', '.join(SIDECAR_FIELDS)}")
                        continue
                    yield image, where, size
            return
        found = sorted(
            path
            for path in self.root.rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and "images" in path.relative_to(self.root).parts[:-1]
        )
        if not found:
            raise ConversionError(f"{self.root}: no images below an images/ folder and no {SIDECAR}")
        for path in found:
            yield path, str(path), None

    def _probe(self, path: Path, where: str) -> tuple[int, int, int] | None:
        try:
            with path.open("rb") as handle:
                header = handle.read(HEADER_BYTES)
                size = os.fstat(handle.fileno()).st_size
                try:
                    info = probe(header, size)
                except InvalidImage as error:
                    if error.code != "HEADER_TOO_LONG" or not error.needed_bytes:
                        raise
                    handle.seek(0)
                    info = probe(handle.read(error.needed_bytes), size)
        except OSError as exc:
            self.problems.add(where, f"cannot read the image for its size: {exc.strerror or exc}")
            return None
        except InvalidImage as error:
            self.problems.add(where, f"{error.code}: {error}")
            return None
        return info.width, info.height, info.depth

    def _boxes(self, labels: Path, width: int, height: int) -> list[Box] | None:
        boxes: list[Box] = []
        ok = True
        for number, text in enumerate(labels.read_text(encoding="utf-8").splitlines(), 1):
            if not text.strip():
                continue
            box = self._box(f"{labels}:{number}", text.split(), width, height)
            if box is None:
                ok = False
            else:
                boxes.append(box)
        return boxes if ok else None

    def _box(self, where: str, fields: list[str], width: int, height: int) -> Box | None:
        if len(fields) != 5:
            self.problems.add(where, f"{len(fields)} values; a box line is `class cx cy w h`")
            return None
        try:
            class_id, values = int(fields[0]), [float(value) for value in fields[1:]]
        except ValueError:
            self.problems.add(where, "class must be an integer and cx cy w h numbers")
            return None
        if class_id not in self.names:
            self.problems.add(where, f"class {class_id} is not in the names of {self.yaml_path}")
            return None
        if (
            not all(math.isfinite(v) and -TOLERANCE <= v <= 1 + TOLERANCE for v in values)
            or min(values[2:]) <= 0
        ):
            self.problems.add(
                where, f"cx cy w h {' '.join(fields[1:])} must be normalized to 0-1, w and h > 0"
            )
            return None
        cx, cy, w, h = values
        inside, _ = clamp_box(width, height, denormalize(cx, cy, w, h, width, height))
        if inside is None:
            self.problems.add(where, f"the box has no whole pixel inside the {width}x{height} image")
            return None
        return Box(self.names[class_id], inside.left, inside.top, inside.width, inside.height)


def _after_images(path: Path) -> str | None:
    """The part of the path after its last `images` folder (the image's name in the dataset)."""
    parts = path.parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "images":
            return "/".join(parts[index + 1 :])
    return None
