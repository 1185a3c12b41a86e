"""The project's own labeled sample data: synthetic "pepperoni pizza slice" photos + a Ground Truth manifest.

`generate` draws deterministic scenes (wedge-shaped slices with crust, cheese and pepperoni on wood,
gingham, stone or plain backgrounds, with plates, red discs and cutlery as distractors) and writes a
manifest in exactly the format of the seed `output-change.manifest`. `load_dataset` reads any directory
that holds a Ground Truth object-detection manifest and its images (e.g. the seed data).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from labelloop_local.emulators.detector import Box, Sample

LABEL = "pepperoni pizza slice"
ATTRIBUTE = "pepperoni_pizza_BB"
SOURCE_REF_PREFIX = "s3://bucket/prefix/data/images/"
MANIFEST_NAME = "sample.manifest"
_JOB_NAME = f"labeling-job/{ATTRIBUTE}"
_BASE_CREATION = (2020, 8, 27, 17, 0, 0)
_MAX_SLICES = 3
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class DatasetError(ValueError):
    """A manifest or an image of a dataset is missing or invalid; the message names the file."""


@dataclass(frozen=True)
class DatasetEntry:
    """One labeled image: where it is, its pixel size and its pixel boxes (left, top, width, height)."""

    file_name: str
    path: Path
    width: int
    height: int
    boxes: list[tuple[str, Box]]

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def load_sample(self) -> Sample:
        with Image.open(self.path) as image:
            rgb = image.convert("RGB")
        if rgb.size != self.size:
            raise DatasetError(
                f"{self.path}: image is {rgb.size[0]}x{rgb.size[1]} but the manifest says "
                f"{self.width}x{self.height}"
            )
        return Sample(image=rgb, boxes=list(self.boxes), name=self.file_name)


@dataclass
class SampleDataset:
    images_dir: Path
    manifest_path: Path
    entries: dict[str, DatasetEntry] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return sorted({label for entry in self.entries.values() for label, _ in entry.boxes})

    @property
    def box_count(self) -> int:
        return sum(len(entry.boxes) for entry in self.entries.values())

    def samples(self, file_names: list[str] | None = None) -> list[Sample]:
        """Loads the images (RGB) in manifest order, or in the order of `file_names`."""
        names = list(self.entries) if file_names is None else file_names
        unknown = [name for name in names if name not in self.entries]
        if unknown:
            raise DatasetError(f"{self.manifest_path}: no manifest line for {', '.join(unknown)}")
        return [self.entries[name].load_sample() for name in names]


# --------------------------------------------------------------------------------------------- generation


def generate(
    out_dir: Path, *, n_images: int = 40, seed: int = 0, size: tuple[int, int] = (640, 480)
) -> SampleDataset:
    """Writes `n_images` labeled scenes to out_dir/images and a manifest to out_dir/manifest/sample.manifest.

    The same arguments always produce byte-identical files.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    width, height = size
    if width < 160 or height < 160:
        raise ValueError(f"image size must be at least 160x160, got {width}x{height}")
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    manifest_path = out_dir / "manifest" / MANIFEST_NAME
    images_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    dataset = SampleDataset(images_dir=images_dir, manifest_path=manifest_path)
    lines = []
    for index in range(n_images):
        rng = np.random.default_rng([seed, index])
        image, boxes = _render_scene(rng, width, height)
        file_name = _file_name(seed, index)
        path = images_dir / file_name
        _save(image, path)
        dataset.entries[file_name] = DatasetEntry(file_name, path, width, height, boxes)
        lines.append(
            manifest_line(SOURCE_REF_PREFIX + file_name, width, height, boxes, _creation_date(index))
        )
    manifest_path.write_text(
        "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines), encoding="utf-8"
    )
    return dataset


def manifest_line(
    source_ref: str, width: int, height: int, boxes: list[tuple[str, Box]], creation_date: str
) -> dict[str, Any]:
    """A Ground Truth object-detection line laid out exactly like the seed manifest (single label)."""
    annotations = [
        {"left": left, "top": top, "width": box_w, "height": box_h, "class_id": 0}
        for _, (left, top, box_w, box_h) in boxes
    ]
    return {
        "source-ref": source_ref,
        ATTRIBUTE: {
            "annotations": annotations,
            "image_size": [{"width": width, "height": height, "depth": 3}],
        },
        f"{ATTRIBUTE}-metadata": {
            "job-name": _JOB_NAME,
            "class-map": {"0": LABEL},
            "human-annotated": "yes",
            "objects": [{"confidence": 1} for _ in annotations],
            "creation-date": creation_date,
            "type": "groundtruth/object-detection",
        },
    }


def _file_name(seed: int, index: int) -> str:
    # A few PNGs so consumers exercise both formats Rekognition accepts.
    suffix = "png" if index % 8 == 5 else "jpg"
    return f"pizza-s{seed}-{index:03d}.{suffix}"


def _creation_date(index: int) -> str:
    year, month, day, hour, minute, _ = _BASE_CREATION
    minute_total = minute + index // 60
    return (
        f"{year:04d}-{month:02d}-{day:02d}T{hour + minute_total // 60:02d}:{minute_total % 60:02d}:"
        f"{index % 60:02d}.000Z"
    )


def _save(image: Image.Image, path: Path) -> None:
    if path.suffix == ".png":
        image.save(path, format="PNG", optimize=False)
    else:
        image.save(path, format="JPEG", quality=90, optimize=False, progressive=False, subsampling=0)


def _render_scene(
    rng: np.random.Generator, width: int, height: int
) -> tuple[Image.Image, list[tuple[str, Box]]]:
    slices = _place_slices(rng, width, height)
    canvas = _background(rng, width, height)
    _draw_plates(rng, canvas, slices)
    _draw_distractors(rng, canvas, [s.box for s in slices])
    for slice_ in slices:
        _draw_slice(rng, canvas, slice_)
    image = _photometric(rng, canvas)
    return image, [(LABEL, s.box) for s in slices]


# --------------------------------------------------------------------------------------------- slices


@dataclass(frozen=True)
class _Slice:
    apex: tuple[float, float]
    radius: float
    start_deg: float
    spread_deg: float
    box: Box


def _slice_extent(radius: float, start_deg: float, spread_deg: float) -> tuple[float, float, float, float]:
    """Bounds of a wedge relative to its apex (the pizza centre): min_x, min_y, max_x, max_y."""
    angles = np.radians(np.linspace(start_deg, start_deg + spread_deg, 64))
    xs = np.concatenate([[0.0], radius * np.cos(angles)])
    ys = np.concatenate([[0.0], radius * np.sin(angles)])
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def _place_slices(rng: np.random.Generator, width: int, height: int) -> list[_Slice]:
    count = int(rng.choice([0, 1, 2, 3], p=[0.1, 0.4, 0.3, 0.2]))
    scale = min(width, height) / 480.0
    slices: list[_Slice] = []
    for _ in range(count * 20):
        if len(slices) == count:
            break
        radius = float(rng.uniform(75, 200)) * scale
        spread = float(rng.uniform(38, 60))
        start = float(rng.uniform(0, 360))
        min_x, min_y, max_x, max_y = _slice_extent(radius, start, spread)
        margin = 4
        if max_x - min_x > width - 2 * margin or max_y - min_y > height - 2 * margin:
            continue
        apex_x = float(rng.uniform(margin - min_x, width - margin - max_x))
        apex_y = float(rng.uniform(margin - min_y, height - margin - max_y))
        left, top = math.floor(apex_x + min_x), math.floor(apex_y + min_y)
        box = (left, top, math.ceil(apex_x + max_x) - left, math.ceil(apex_y + max_y) - top)
        if all(_box_iou(box, other.box) < 0.05 for other in slices):
            slices.append(_Slice((apex_x, apex_y), radius, start, spread, box))
    return slices


def _draw_slice(rng: np.random.Generator, canvas: Image.Image, slice_: _Slice) -> None:
    """Draws one slice at 2x on a local patch (anti-aliased), with a soft shadow, and pastes it."""
    ss = 2
    left, top, box_w, box_h = slice_.box
    pad = 12
    origin = (left - pad, top - pad)
    patch_size = ((box_w + 2 * pad) * ss, (box_h + 2 * pad) * ss)
    apex = ((slice_.apex[0] - origin[0]) * ss, (slice_.apex[1] - origin[1]) * ss)
    radius = slice_.radius * ss
    start, end = slice_.start_deg, slice_.start_deg + slice_.spread_deg
    crust = max(5.0 * ss, radius * float(rng.uniform(0.1, 0.16)))

    def wedge(r: float) -> list[float]:
        return [apex[0] - r, apex[1] - r, apex[0] + r, apex[1] + r]

    slice_mask = Image.new("L", patch_size, 0)
    ImageDraw.Draw(slice_mask).pieslice(wedge(radius), start, end, fill=255)
    cheese_mask = Image.new("L", patch_size, 0)
    ImageDraw.Draw(cheese_mask).pieslice(wedge(radius - crust), start + 1.5, end - 1.5, fill=255)

    cheese = np.array([rng.uniform(225, 252), rng.uniform(160, 215), rng.uniform(55, 120)])
    crust_rgb = np.array([rng.uniform(140, 215), rng.uniform(85, 150), rng.uniform(40, 85)])
    body = Image.new("RGB", patch_size, tuple(int(c) for c in crust_rgb))
    cheese_layer = Image.new("RGB", patch_size, tuple(int(c) for c in cheese))
    draw = ImageDraw.Draw(cheese_layer)
    for _ in range(int(rng.integers(10, 22))):  # melted-cheese mottling
        x, y = _point_in_wedge(rng, apex, radius - crust, start, end)
        r = float(rng.uniform(3, 10)) * ss
        tone = cheese * float(rng.uniform(0.85, 1.08))
        draw.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=tuple(int(min(255, c)) for c in tone))
    for _ in range(int(rng.integers(2, 9))):  # pepperoni
        x, y = _point_in_wedge(rng, apex, (radius - crust) * 0.95, start + 4, end - 4, inner=0.3)
        r = radius * float(rng.uniform(0.07, 0.11))
        red = (int(rng.uniform(150, 195)), int(rng.uniform(30, 60)), int(rng.uniform(25, 50)))
        dark = tuple(int(c * 0.75) for c in red)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=dark)
        draw.ellipse([x - r * 0.85, y - r * 0.85, x + r * 0.85, y + r * 0.85], fill=red)
    body.paste(cheese_layer, (0, 0), cheese_mask)

    shadow_mask = Image.new("L", patch_size, 0)
    shadow_mask.paste(slice_mask.point(lambda v: v * 0.45), (3 * ss, 5 * ss))
    shadow_mask = shadow_mask.filter(ImageFilter.GaussianBlur(4 * ss))
    final = (patch_size[0] // ss, patch_size[1] // ss)
    canvas.paste((20, 14, 10), origin, shadow_mask.resize(final, Image.Resampling.LANCZOS))
    canvas.paste(
        body.resize(final, Image.Resampling.LANCZOS),
        origin,
        slice_mask.resize(final, Image.Resampling.LANCZOS),
    )


def _point_in_wedge(
    rng: np.random.Generator,
    apex: tuple[float, float],
    radius: float,
    start: float,
    end: float,
    inner: float = 0.15,
) -> tuple[float, float]:
    r = radius * math.sqrt(float(rng.uniform(inner * inner, 1.0)))
    angle = math.radians(float(rng.uniform(start, end)))
    return apex[0] + r * math.cos(angle), apex[1] + r * math.sin(angle)


# --------------------------------------------------------------------------------------------- scene


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    kind = int(rng.integers(0, 5))
    if kind == 4:  # dark slate board
        tone = rng.uniform(35, 70)
        pixels = _smooth_field(rng, width, height, base=np.array([tone, tone * 1.02, tone * 1.05]), spread=8)
    elif kind == 0:
        pixels = _wood(rng, width, height)
    elif kind == 1:
        pixels = _gingham(rng, width, height)
    elif kind == 2:
        pixels = _smooth_field(rng, width, height, base=rng.uniform(150, 220, 3), spread=25)
    else:
        gray = rng.uniform(90, 200)
        pixels = _smooth_field(rng, width, height, base=np.array([gray, gray, gray * 1.03]), spread=18)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _wood(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    base = np.array([rng.uniform(120, 175), rng.uniform(75, 115), rng.uniform(40, 70)])
    vertical = bool(rng.integers(0, 2))
    w, h = (height, width) if vertical else (width, height)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    wobble = 6 * np.sin(x / rng.uniform(40, 90) + rng.uniform(0, 6))
    grain = np.sin((y + wobble) * rng.uniform(0.35, 0.7)) * 0.5 + np.sin((y + wobble) * 0.09) * 0.5
    plank = rng.uniform(70, 130)
    seams = (np.mod(y, plank) < 2.0).astype(np.float64)
    shade = 1.0 + 0.09 * grain - 0.35 * seams + rng.normal(0, 0.03, (h, w))
    pixels = shade[..., None] * base[None, None, :]
    return pixels.transpose(1, 0, 2) if vertical else pixels


def _gingham(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    colour = [np.array([200, 40, 45]), np.array([40, 70, 170]), np.array([40, 130, 70])][
        int(rng.integers(0, 3))
    ]
    white = np.array([240.0, 238.0, 232.0])
    step = float(rng.uniform(18, 40))
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    bands = ((np.mod(x, 2 * step) < step).astype(np.float64) + (np.mod(y, 2 * step) < step)) / 2.0
    pixels = white[None, None, :] * (1 - bands[..., None]) + colour[None, None, :] * bands[..., None]
    return pixels + rng.normal(0, 4, (height, width, 1))


def _smooth_field(
    rng: np.random.Generator, width: int, height: int, base: np.ndarray, spread: float
) -> np.ndarray:
    coarse = rng.normal(0, spread, (4, 5, 3)) + base[None, None, :]
    small = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8), "RGB")
    field_ = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    return field_ + rng.normal(0, 5, (height, width, 1))


def _draw_plates(rng: np.random.Generator, canvas: Image.Image, slices: list[_Slice]) -> None:
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    plates = [
        (
            s.apex[0] + s.radius * 0.5 * math.cos(math.radians(s.start_deg + s.spread_deg / 2)),
            s.apex[1] + s.radius * 0.5 * math.sin(math.radians(s.start_deg + s.spread_deg / 2)),
            s.radius * 0.8,
        )
        for s in slices
        if rng.uniform() < 0.35
    ]  # some slices lie on a plate
    for _ in range(int(rng.integers(0, 3))):  # empty plates are distractors
        plates.append((rng.uniform(0, width), rng.uniform(0, height), rng.uniform(60, 150)))
    for cx, cy, r in plates:
        tone = rng.uniform(215, 250)
        rim = (int(tone * 0.9), int(tone * 0.9), int(tone * 0.88))
        draw.ellipse([cx - r, cy - r * 0.95, cx + r, cy + r * 0.95], fill=rim)
        inner = r * 0.8
        draw.ellipse(
            [cx - inner, cy - inner * 0.95, cx + inner, cy + inner * 0.95],
            fill=(int(tone), int(tone), int(tone * 0.97)),
        )


def _draw_distractors(rng: np.random.Generator, canvas: Image.Image, slice_boxes: list[Box]) -> None:
    """Red discs, yellow discs and cutlery, kept clear of every slice box."""
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    for _ in range(int(rng.integers(0, 7))):
        kind = int(rng.integers(0, 4))
        r = float(rng.uniform(10, 35)) if kind < 2 else float(rng.uniform(30, 110))
        r = min(r, min(width, height) / 4)
        cx, cy = float(rng.uniform(r, width - r)), float(rng.uniform(r, height - r))
        bounds = (int(cx - r), int(cy - r), int(2 * r), int(2 * r))
        if any(_box_iou(bounds, box) > 0 or _overlaps(bounds, box) for box in slice_boxes):
            continue
        if kind == 0:  # tomato / loose pepperoni disc
            red = (int(rng.uniform(160, 220)), int(rng.uniform(20, 60)), int(rng.uniform(20, 50)))
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=red)
        elif kind == 1:  # lemon slice
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(235, 215, 70))
            draw.ellipse([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=(245, 235, 140))
        elif kind == 2:  # tortilla chip: a yellow triangle, but no crust and no pepperoni
            angle = float(rng.uniform(0, 2 * math.pi))
            corners = [
                (cx + r * math.cos(angle + k * 2.2), cy + r * math.sin(angle + k * 2.2)) for k in range(3)
            ]
            tone = (int(rng.uniform(220, 245)), int(rng.uniform(160, 200)), int(rng.uniform(50, 90)))
            draw.polygon(corners, fill=tone)
        else:  # knife or fork: a thin grey bar
            angle = float(rng.uniform(0, math.pi))
            dx, dy = r * math.cos(angle), r * math.sin(angle)
            draw.line(
                [cx - dx, cy - dy, cx + dx, cy + dy], fill=(175, 178, 185), width=int(rng.integers(5, 10))
            )


def _photometric(rng: np.random.Generator, canvas: Image.Image) -> Image.Image:
    pixels = np.asarray(canvas, dtype=np.float64)
    gain = rng.uniform(0.82, 1.12) * rng.uniform(0.95, 1.05, 3)
    noise = rng.normal(0, rng.uniform(2, 6), (*pixels.shape[:2], 1))
    return Image.fromarray(np.clip(pixels * gain[None, None, :] + noise, 0, 255).astype(np.uint8), "RGB")


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------------------------- loading


def load_dataset(directory: Path) -> SampleDataset:
    """Reads every Ground Truth object-detection manifest under `directory` and finds its images by file name.

    Placeholder source-refs (`s3://bucket/prefix/data/images/<file>`) are mapped to files under the
    directory by file name. A later line for the same file replaces an earlier one.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory")
    manifests = sorted(p for p in directory.rglob("*.manifest") if p.is_file())
    if not manifests:
        raise DatasetError(f"{directory}: no *.manifest file found")
    images = _index_images(directory)
    entries: dict[str, DatasetEntry] = {}
    for manifest in manifests:
        for line_no, line in _manifest_lines(manifest):
            entry = _parse_line(manifest, line_no, line, images, directory)
            entries[entry.file_name] = entry
    if not entries:
        raise DatasetError(f"{manifests[0]}: the manifest has no lines")
    parents = {entry.path.parent for entry in entries.values()}
    images_dir = parents.pop() if len(parents) == 1 else directory
    return SampleDataset(images_dir=images_dir, manifest_path=manifests[0], entries=entries)


def _index_images(directory: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix.lower() in _IMAGE_SUFFIXES:
            index.setdefault(path.name, []).append(path)
    return index


def _manifest_lines(manifest: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with manifest.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{manifest}:{line_no}: not JSON ({exc.msg})") from exc
            if not isinstance(doc, dict):
                raise DatasetError(f"{manifest}:{line_no}: a manifest line must be a JSON object")
            yield line_no, doc


def _parse_line(
    manifest: Path, line_no: int, doc: dict[str, Any], images: dict[str, list[Path]], directory: Path
) -> DatasetEntry:
    where = f"{manifest}:{line_no}"
    source_ref = doc.get("source-ref")
    if not isinstance(source_ref, str) or not source_ref.strip("/"):
        raise DatasetError(f"{where}: missing source-ref")
    attribute = _label_attribute(doc, where)
    body, metadata = doc[attribute], doc[f"{attribute}-metadata"]
    class_map = metadata.get("class-map")
    try:
        size = body["image_size"][0]
        width, height = int(size["width"]), int(size["height"])
        boxes = [
            (
                class_map[str(a["class_id"])],
                (int(a["left"]), int(a["top"]), int(a["width"]), int(a["height"])),
            )
            for a in body["annotations"]
        ]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: malformed {attribute} ({type(exc).__name__}: {exc})") from exc
    file_name = source_ref.rsplit("/", 1)[-1]
    path = _find_image(file_name, source_ref, images, directory, where)
    return DatasetEntry(file_name=file_name, path=path, width=width, height=height, boxes=boxes)


def _label_attribute(doc: dict[str, Any], where: str) -> str:
    candidates = [
        key
        for key, value in doc.items()
        if isinstance(value, dict)
        and value.get("type") == "groundtruth/object-detection"
        and key.endswith("-metadata")
        and key[: -len("-metadata")] in doc
    ]
    if len(candidates) != 1:
        raise DatasetError(
            f"{where}: expected exactly one object-detection label attribute, found {len(candidates)}"
        )
    attribute = candidates[0][: -len("-metadata")]
    if not isinstance(doc[attribute], dict) or not isinstance(doc[candidates[0]].get("class-map"), dict):
        raise DatasetError(f"{where}: {attribute} or its class-map is not an object")
    return attribute


def _find_image(
    file_name: str, source_ref: str, images: dict[str, list[Path]], directory: Path, where: str
) -> Path:
    found = images.get(file_name, [])
    if not found:
        raise DatasetError(
            f"{where}: image file {file_name!r} (from {source_ref}) not found under {directory}"
        )
    if len(found) == 1:
        return found[0]
    # Same name in several folders: prefer the one whose relative path ends the source-ref's key.
    matching = [p for p in found if source_ref.endswith("/" + p.relative_to(directory).as_posix())]
    if len(matching) == 1:
        return matching[0]
    raise DatasetError(
        f"{where}: image file {file_name!r} is ambiguous under {directory}: "
        + ", ".join(str(p) for p in found)
    )
