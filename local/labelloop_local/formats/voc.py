"""Pascal VOC detection annotations: one XML file per image, in the classic devkit layout.

```
Annotations/<stem>.xml      <annotation>: folder, filename, path (the source-ref), source, size
                            (width, height, depth), segmented, and one <object> per box: name, pose,
                            truncated, difficult, bndbox (xmin, ymin, xmax, ymax)
JPEGImages/<name>           the images (with --images)
ImageSets/Main/trainval.txt the stems, one per line
```
Coordinates are pixel indices counted from 1, both corners inclusive (the devkit's convention, which
readers such as Detectron2's undo with `xmin - 1`): xmin = left + 1, xmax = left + width. `origin=0`
writes and reads 0-based corners (xmin = left, xmax = left + width) for tools that use those.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from labelloop_core.geometry import PixelBox
from labelloop_local.formats.groundtruth import (
    Box,
    ClassIds,
    ConversionError,
    LabeledImage,
    Problems,
    clamp_box,
    stem,
)

ANNOTATIONS, IMAGES, IMAGE_SETS = "Annotations", "JPEGImages", "ImageSets/Main"
IMAGE_SET_FILE = "trainval.txt"


class VocWriter:
    def __init__(self, directory: Path, origin: int = 1) -> None:
        self.directory = directory
        self.origin = origin
        self.images = 0
        self.boxes = 0
        (directory / ANNOTATIONS).mkdir()
        (directory / IMAGE_SETS).mkdir(parents=True)
        self._set = (directory / IMAGE_SETS / IMAGE_SET_FILE).open("w", encoding="utf-8", newline="\n")

    def add(self, image: LabeledImage, class_ids: ClassIds) -> None:
        root = ET.Element("annotation")
        _text(root, "folder", IMAGES)
        _text(root, "filename", image.name)
        _text(root, "path", image.source_ref)
        source = ET.SubElement(root, "source")
        _text(source, "database", "labelloop")
        size = ET.SubElement(root, "size")
        for tag, value in (("width", image.width), ("height", image.height), ("depth", image.depth)):
            _text(size, tag, str(value))
        _text(root, "segmented", "0")
        for box in image.boxes:
            element = ET.SubElement(root, "object")
            _text(element, "name", box.label)
            _text(element, "pose", "Unspecified")
            truncated = box.left == 0 or box.top == 0 or box.left + box.width == image.width
            _text(element, "truncated", str(int(truncated or box.top + box.height == image.height)))
            _text(element, "difficult", "0")
            corners = ET.SubElement(element, "bndbox")
            for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), self.corners(box), strict=True):
                _text(corners, tag, str(value))
        ET.indent(root)
        path = self.directory / ANNOTATIONS / (stem(image.name) + ".xml")
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
        self._set.write(stem(image.name) + "\n")
        self.images += 1
        self.boxes += len(image.boxes)

    def corners(self, box: Box) -> tuple[int, int, int, int]:
        start = self.origin
        return box.left + start, box.top + start, box.left + box.width, box.top + box.height

    def finish(self, class_ids: ClassIds) -> None:
        self._set.close()

    def close(self) -> None:
        self._set.close()


def _text(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


# --- import ----------------------------------------------------------------------------------------


class VocDataset:
    """VOC XML files for import: a folder (its Annotations/ when it has one, else its *.xml) or files."""

    def __init__(self, paths: list[Path], problems: Problems, origin: int = 1) -> None:
        self.problems = problems
        self.origin = origin
        self.files: list[Path] = []
        for path in paths:
            if path.is_dir():
                folder = path / ANNOTATIONS if (path / ANNOTATIONS).is_dir() else path
                found = sorted(folder.rglob("*.xml"))
                if not found:
                    raise ConversionError(f"{path}: no *.xml annotation files")
                self.files.extend(found)
            elif path.is_file():
                self.files.append(path)
            else:
                raise ConversionError(f"{path}: no such file or folder")

    def names(self) -> list[str]:
        """Every object name, sorted (the default class-id order: VOC files have no class ids)."""
        found: set[str] = set()
        for path in self.files:
            root = self._parse(path, report=False)
            if root is not None:
                found.update((element.findtext("name") or "").strip() for element in root.iter("object"))
        return sorted(name for name in found if name)

    def images(self, source_prefix: str) -> Iterator[LabeledImage]:
        for path in self.files:
            root = self._parse(path)
            if root is None:
                continue
            image = self._image(path, root, source_prefix)
            if image is not None:
                yield image

    def _parse(self, path: Path, report: bool = True) -> ET.Element | None:
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            if report:
                self.problems.add(str(path), f"not readable XML: {exc}")
            return None
        if root.tag != "annotation":
            if report:
                self.problems.add(str(path), f"the root element is <{root.tag}>, not <annotation>")
            return None
        return root

    def _image(self, path: Path, root: ET.Element, source_prefix: str) -> LabeledImage | None:
        name = (root.findtext("filename") or "").strip()
        if not name:
            self.problems.add(f"{path}: <filename>", "missing: it names the image")
            return None
        size = [_integer(root.findtext(f"size/{tag}")) for tag in ("width", "height", "depth")]
        width, height, depth = size
        if width is None or height is None or width <= 0 or height <= 0:
            self.problems.add(f"{path}: <size>", "width and height must be positive integers")
            return None
        boxes: list[Box] = []
        ok = True
        for number, element in enumerate(root.iter("object"), 1):
            box = self._box(f"{path}: <object> {number}", element, width, height)
            ok = ok and box is not None
            if box is not None:
                boxes.append(box)
        if not ok:
            return None
        depth = depth if depth and depth > 0 else 3
        return LabeledImage(source_prefix + name, width, height, depth, boxes, str(path), name)

    def _box(self, where: str, element: ET.Element, width: int, height: int) -> Box | None:
        label = (element.findtext("name") or "").strip()
        if not label:
            self.problems.add(where, "<name> is missing")
            return None
        values = [_number(element.findtext(f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if any(value is None for value in values):
            self.problems.add(where, f"({label}) <bndbox> needs numeric xmin, ymin, xmax and ymax")
            return None
        xmin, ymin, xmax, ymax = (float(v) for v in values if v is not None)
        left, top = xmin - self.origin, ymin - self.origin
        box = PixelBox.from_numbers(left, top, xmax - left, ymax - top)
        inside, cut = clamp_box(width, height, box)
        if inside is None or box.width <= 0 or box.height <= 0:
            self.problems.add(
                where, f"({label}) bndbox {values} has no area inside the {width}x{height} image"
            )
            return None
        if cut:
            self.problems.note(where, f"({label}) bndbox {values} cut to the {width}x{height} image")
        return Box(label, inside.left, inside.top, inside.width, inside.height)


def _integer(text: str | None) -> int | None:
    number = _number(text)
    return int(number) if number is not None and number.is_integer() else None


def _number(text: str | None) -> float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
