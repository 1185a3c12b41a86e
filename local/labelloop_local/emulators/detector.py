"""A small CPU object detector standing in for Rekognition Custom Labels in the local stack.

Classic sliding-window detection, numpy only:
- features per window: HOG (gradient orientation histograms per cell, 2x2 block L2-Hys normalisation),
  a coarse spatial colour histogram and the colour of the ring of cells around the window;
- windows at several scales and aspect ratios (learned from the training boxes), found by resizing the
  image anisotropically so that one fixed template covers every shape;
- one-vs-rest L2-regularised logistic regression per label, trained with hard-negative mining;
- non-maximum suppression, and confidences (0-100) calibrated with Platt scaling on the training images.

Images are downscaled internally (longest side <= 512 px); boxes come back as ratios of the original image.
Models serialise to a plain .npz archive (no pickle).
"""

from __future__ import annotations

import functools
import io
import json
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from labelloop_local.emulators.evaluation import (
    EvaluationSummary,
    LabelMetrics,
    evaluate,
    evaluate_detections,
)

__all__ = [
    "Box",
    "Detection",
    "EvaluationSummary",
    "LabelMetrics",
    "Model",
    "ModelFormatError",
    "Sample",
    "TrainingError",
    "evaluate",
    "evaluate_detections",
    "non_max_suppression",
    "split",
    "train",
]

Box = tuple[int, int, int, int]  # left, top, width, height in pixels
Progress = Callable[[str], None]

FORMAT_VERSION = 1
MAX_SIDE = 512  # working resolution: longest side of the image the detector looks at
CELL = 6  # pixels per HOG cell
TEMPLATE = 6  # window = TEMPLATE x TEMPLATE cells
ORIENTATIONS = 9
HUE_BINS = 12
COLOR_BINS = 3 + 2 * HUE_BINS  # dark, grey, white + (hue x {dim, bright})
SCALE_STEP = 2.0 ** (1 / 3)
ASPECT_QUANTILES = (0.15, 0.5, 0.85)
SIZE_MARGIN = 1.25  # look for objects this much smaller/larger than any seen in training
MINING_ROUNDS = 2
NMS_IOU = 0.4
MAX_SHIFT = 0.3  # box regression may move a window by at most this fraction of its size
MAX_LOG_SCALE = 0.4  # ... and scale each side by at most e**0.4
POSITIVE_IOU = 0.5
NEGATIVE_IOU = 0.3
CANDIDATE_FLOOR = 1.0  # detections below this confidence are never reported
MAX_CANDIDATES_PER_LEVEL = 150
_EPS = 1e-6
GRADIENT_FLOOR = 4.0  # mean gradient magnitude (grey levels per pixel) treated as flat
_SMOOTH = ImageFilter.GaussianBlur(0.8)

_HOG_SHAPE = (TEMPLATE - 1, TEMPLATE - 1, 4 * ORIENTATIONS)
_COLOR_SHAPE = (TEMPLATE // 2, TEMPLATE // 2, COLOR_BINS)
FEATURE_DIM = int(np.prod(_HOG_SHAPE) + np.prod(_COLOR_SHAPE) + COLOR_BINS)


class TrainingError(ValueError):
    """The training data cannot produce a model (no images, unknown label, a label without boxes...)."""


class ModelFormatError(ValueError):
    """Bytes given to Model.from_bytes are not a model this code wrote."""


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    boxes: list[tuple[str, Box]]
    name: str = ""


@dataclass(frozen=True)
class Detection:
    """One detected object; the box is in ratios (0-1) of the image, as DetectCustomLabels returns it."""

    label: str
    confidence: float
    left: float
    top: float
    width: float
    height: float


# --------------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class _Maps:
    """Per-cell features of one resized image: normalised HOG blocks and colour histograms."""

    blocks: np.ndarray  # (rows-1, cols-1, 36)
    colors: np.ndarray  # (rows, cols, COLOR_BINS), fractions of the cell's pixels
    integral: np.ndarray  # (rows+1, cols+1, COLOR_BINS) summed-area table of colors

    @property
    def rows(self) -> int:
        return int(self.colors.shape[0])

    @property
    def cols(self) -> int:
        return int(self.colors.shape[1])


def _feature_maps(image: Image.Image) -> _Maps:
    width, height = image.size
    rows, cols = height // CELL, width // CELL
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, 1:-1] = gray[:, 2:] - gray[:, :-2]
    gy[1:-1, :] = gray[2:, :] - gray[:-2, :]
    gx, gy = gx[: rows * CELL, : cols * CELL], gy[: rows * CELL, : cols * CELL]
    magnitude = np.sqrt(gx * gx + gy * gy).ravel()
    angle = np.arctan2(gy, gx).ravel()
    angle += np.float32(np.pi) * (angle < 0)  # unsigned orientation in [0, pi]
    position = angle * np.float32(ORIENTATIONS / np.pi) - np.float32(0.5)
    lower = np.floor(position)
    upper_weight = position - lower
    lower_bin = lower.astype(np.int32)
    lower_bin[lower_bin < 0] += ORIENTATIONS
    upper_bin = lower_bin + 1
    upper_bin[upper_bin >= ORIENTATIONS] -= ORIENTATIONS
    cell = _cell_index(rows, cols)
    total = rows * cols * ORIENTATIONS
    hist = np.bincount(cell * ORIENTATIONS + lower_bin, magnitude * (1 - upper_weight), minlength=total)
    hist += np.bincount(cell * ORIENTATIONS + upper_bin, magnitude * upper_weight, minlength=total)
    hist = hist.reshape(rows, cols, ORIENTATIONS)
    blocks = np.concatenate([hist[:-1, :-1], hist[:-1, 1:], hist[1:, :-1], hist[1:, 1:]], axis=2)
    blocks = _l2_hys(blocks).astype(np.float32)

    quantised = np.asarray(image)[: rows * CELL, : cols * CELL] >> 3
    bins = _color_table()[
        (quantised[..., 0].astype(np.int32) << 10)
        | (quantised[..., 1].astype(np.int32) << 5)
        | quantised[..., 2]
    ].ravel()
    colors = np.bincount(cell * COLOR_BINS + bins, minlength=rows * cols * COLOR_BINS).astype(np.float32)
    colors = colors.reshape(rows, cols, COLOR_BINS) / float(CELL * CELL)
    integral = np.zeros((rows + 1, cols + 1, COLOR_BINS), dtype=np.float64)
    integral[1:, 1:] = colors.cumsum(0).cumsum(1)
    return _Maps(blocks=blocks, colors=colors, integral=integral)


@functools.lru_cache(maxsize=64)
def _cell_index(rows: int, cols: int) -> np.ndarray:
    row_cells = np.arange(rows * CELL, dtype=np.int32) // CELL
    col_cells = np.arange(cols * CELL, dtype=np.int32) // CELL
    index = (row_cells[:, None] * cols + col_cells[None, :]).ravel()
    index.flags.writeable = False
    return index


@functools.lru_cache(maxsize=1)
def _color_table() -> np.ndarray:
    """Colour bin of every RGB colour quantised to 5 bits per channel (index r<<10 | g<<5 | b)."""
    levels = np.arange(32, dtype=np.uint8) * 8 + 4
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    rgb = np.stack([r, g, b], axis=-1).reshape(1, -1, 3)
    hsv = np.asarray(Image.fromarray(rgb, "RGB").convert("HSV"), dtype=np.int64)[0]
    table = _color_bins(hsv[:, 0], hsv[:, 1], hsv[:, 2]).astype(np.int32)
    table.flags.writeable = False
    return table


def _l2_hys(blocks: np.ndarray) -> np.ndarray:
    # The floor keeps weak, noisy blocks weak instead of normalising them up to full contrast.
    floor = (4 * CELL * CELL * GRADIENT_FLOOR) ** 2
    normed = blocks / np.sqrt((blocks * blocks).sum(axis=2, keepdims=True) + floor)
    normed = np.minimum(normed, 0.2)
    return normed / np.sqrt((normed * normed).sum(axis=2, keepdims=True) + _EPS)


def _color_bins(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    achromatic = (saturation < 51) | (value < 51)
    grey_level = np.where(value < 64, 0, np.where(value < 166, 1, 2))
    chromatic = 3 + (hue * HUE_BINS // 256) * 2 + (value >= 153)
    return np.where(achromatic, grey_level, chromatic)


def _ring_means(maps: _Maps, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Mean colour histogram of the one-cell ring around windows whose top-left cells are (ys, xs)."""
    integral = maps.integral
    y0, x0 = np.maximum(ys - 1, 0), np.maximum(xs - 1, 0)
    y1, x1 = np.minimum(ys + TEMPLATE + 1, maps.rows), np.minimum(xs + TEMPLATE + 1, maps.cols)
    outer = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    yi, xi = ys + TEMPLATE, xs + TEMPLATE
    inner = integral[yi, xi] - integral[ys, xi] - integral[yi, xs] + integral[ys, xs]
    count = ((y1 - y0) * (x1 - x0) - TEMPLATE * TEMPLATE).astype(np.float64)
    return ((outer - inner) / np.maximum(count, 1.0)[..., None]).astype(np.float32)


def _pooled_colors(maps: _Maps) -> np.ndarray:
    colors = maps.colors
    return (colors[:-1, :-1] + colors[:-1, 1:] + colors[1:, :-1] + colors[1:, 1:]) * 0.25


def _window_features(maps: _Maps, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Explicit feature vectors of the windows at (ys, xs): the layout the weights use."""
    pooled = _pooled_colors(maps)
    rows = []
    ring = _ring_means(maps, ys, xs)
    for index, (y, x) in enumerate(zip(ys.tolist(), xs.tolist(), strict=True)):
        hog = maps.blocks[y : y + TEMPLATE - 1, x : x + TEMPLATE - 1]
        color = pooled[y : y + TEMPLATE - 1 : 2, x : x + TEMPLATE - 1 : 2]
        rows.append(np.concatenate([hog.ravel(), color.ravel(), ring[index]]))
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), FEATURE_DIM)


def _score_maps(maps: _Maps, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Linear scores of every window position for every label: (positions_y, positions_x, labels).

    Same result as _window_features(...) @ weights + bias, computed as a correlation (no feature matrix).
    """
    ny, nx = maps.rows - TEMPLATE + 1, maps.cols - TEMPLATE + 1
    hog_size, color_size = int(np.prod(_HOG_SHAPE)), int(np.prod(_COLOR_SHAPE))
    w_hog = weights[:hog_size].reshape(*_HOG_SHAPE, -1)
    w_color = weights[hog_size : hog_size + color_size].reshape(*_COLOR_SHAPE, -1)
    w_ring = weights[hog_size + color_size :]
    n_labels = bias.shape[0]
    scores = np.broadcast_to(bias, (ny, nx, n_labels)).astype(np.float64)
    # One matrix product per feature kind gives every cell's contribution to every template offset;
    # shifted sums then add them up per window.
    hog_parts = maps.blocks @ w_hog.transpose(2, 0, 1, 3).reshape(w_hog.shape[2], -1).astype(np.float32)
    hog_parts = hog_parts.reshape(*maps.blocks.shape[:2], TEMPLATE - 1, TEMPLATE - 1, n_labels)
    for dy in range(TEMPLATE - 1):
        for dx in range(TEMPLATE - 1):
            scores += hog_parts[dy : dy + ny, dx : dx + nx, dy, dx]
    pooled = _pooled_colors(maps)
    color_parts = pooled @ w_color.transpose(2, 0, 1, 3).reshape(COLOR_BINS, -1).astype(np.float32)
    color_parts = color_parts.reshape(*pooled.shape[:2], *_COLOR_SHAPE[:2], n_labels)
    for i in range(_COLOR_SHAPE[0]):
        for j in range(_COLOR_SHAPE[1]):
            scores += color_parts[2 * i : 2 * i + ny, 2 * j : 2 * j + nx, i, j]
    scores += _ring_scores(maps, w_ring, ny, nx)
    return scores


def _ring_scores(maps: _Maps, w_ring: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """_ring_means(...) @ w_ring for every window, from a summed-area table of the projected colours."""
    projected = maps.colors @ w_ring.astype(np.float32)
    integral = np.zeros((maps.rows + 1, maps.cols + 1, projected.shape[2]))
    integral[1:, 1:] = projected.cumsum(0).cumsum(1)
    ys, xs = np.mgrid[0:ny, 0:nx]
    y0, x0 = np.maximum(ys - 1, 0), np.maximum(xs - 1, 0)
    y1, x1 = np.minimum(ys + TEMPLATE + 1, maps.rows), np.minimum(xs + TEMPLATE + 1, maps.cols)
    outer = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    inner = (
        integral[TEMPLATE:, TEMPLATE:]
        - integral[:-TEMPLATE, TEMPLATE:]
        - integral[TEMPLATE:, :-TEMPLATE]
        + integral[:-TEMPLATE, :-TEMPLATE]
    )
    count = ((y1 - y0) * (x1 - x0) - TEMPLATE * TEMPLATE).astype(np.float64)
    return (outer - inner) / np.maximum(count, 1.0)[..., None]


# --------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Geometry:
    """Object shapes the model looks for: sizes relative to sqrt(work image area), and aspect ratios w/h."""

    min_size: float
    max_size: float
    aspects: tuple[float, ...]

    def levels(self, width: int, height: int) -> list[tuple[int, int]]:
        """Resized image sizes (w, h) at which the fixed template matches each object size and aspect."""
        window = TEMPLATE * CELL
        side = math.sqrt(width * height)
        sizes = []
        size = max(self.min_size * side, window / 2.0)
        while size <= max(self.max_size * side, size):
            sizes.append(size)
            size *= SCALE_STEP
            if size > self.max_size * side * SCALE_STEP**0.5:
                break
        levels = []
        for size in sizes:
            for aspect in self.aspects:
                obj_w, obj_h = size * math.sqrt(aspect), size / math.sqrt(aspect)
                level = (round(width * window / obj_w), round(height * window / obj_h))
                if window + CELL <= level[0] <= 2 * width and window + CELL <= level[1] <= 2 * height:
                    levels.append(level)
        return sorted(set(levels), reverse=True)


def _learn_geometry(boxes: list[tuple[float, float]]) -> _Geometry:
    """boxes: (relative size, aspect) of every training box in working coordinates."""
    sizes = np.array([b[0] for b in boxes])
    log_aspects = np.log(np.clip([b[1] for b in boxes], 0.25, 4.0))
    aspects: list[float] = []
    for quantile in ASPECT_QUANTILES:
        candidate = float(np.quantile(log_aspects, quantile))
        if all(abs(candidate - math.log(a)) > 0.2 for a in aspects):
            aspects.append(math.exp(candidate))
    return _Geometry(
        min_size=float(sizes.min()) / SIZE_MARGIN,
        max_size=float(sizes.max()) * SIZE_MARGIN,
        aspects=tuple(round(a, 4) for a in aspects),
    )


@dataclass
class _Prepared:
    image: Image.Image  # working-resolution RGB image
    factor: float  # working / original
    boxes: list[tuple[int, np.ndarray]]  # (label index, [left, top, width, height] in working pixels)
    original_size: tuple[int, int]


def _working_image(image: Image.Image) -> tuple[Image.Image, float]:
    """The image the detector looks at (longest side <= MAX_SIDE, lightly blurred) and its scale factor.

    The blur keeps sensor noise from filling flat regions with random gradient orientations.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    longest = max(rgb.size)
    factor = min(1.0, MAX_SIDE / longest)
    if factor < 1.0:
        size = (max(1, round(rgb.width * factor)), max(1, round(rgb.height * factor)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return rgb.filter(_SMOOTH), factor


def _box_ious(windows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU matrix between (n, 4) and (m, 4) arrays of [left, top, width, height]."""
    if len(windows) == 0 or len(boxes) == 0:
        return np.zeros((len(windows), len(boxes)))
    left = np.maximum(windows[:, None, 0], boxes[None, :, 0])
    top = np.maximum(windows[:, None, 1], boxes[None, :, 1])
    right = np.minimum(windows[:, None, 0] + windows[:, None, 2], boxes[None, :, 0] + boxes[None, :, 2])
    bottom = np.minimum(windows[:, None, 1] + windows[:, None, 3], boxes[None, :, 1] + boxes[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = (windows[:, None, 2] * windows[:, None, 3]) + (boxes[None, :, 2] * boxes[None, :, 3]) - inter
    return inter / np.maximum(union, _EPS)


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU, containment: float = 0.8
) -> list[int]:
    """Indices of boxes kept, best first: drops a box overlapping a better one by IoU > iou_threshold,
    or lying mostly (intersection / own area > containment) inside a better one."""
    return [kept for kept, _ in _suppress(boxes, scores, iou_threshold, containment)]


def _suppress(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, containment: float
) -> list[tuple[int, np.ndarray]]:
    """Greedy NMS: each kept box with the boxes it overlaps by IoU > iou_threshold (itself included)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    remaining = np.argsort(-np.asarray(scores), kind="stable")
    areas = boxes[:, 2] * boxes[:, 3]
    kept: list[tuple[int, np.ndarray]] = []
    while len(remaining):
        best, rest = int(remaining[0]), remaining[1:]
        left = np.maximum(boxes[best, 0], boxes[rest, 0])
        top = np.maximum(boxes[best, 1], boxes[rest, 1])
        right = np.minimum(boxes[best, 0] + boxes[best, 2], boxes[rest, 0] + boxes[rest, 2])
        bottom = np.minimum(boxes[best, 1] + boxes[best, 3], boxes[rest, 1] + boxes[rest, 3])
        inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
        overlapping = inter / np.maximum(areas[best] + areas[rest] - inter, _EPS) > iou_threshold
        contained = inter / np.maximum(areas[rest], _EPS) > containment
        kept.append((best, np.concatenate([[best], rest[overlapping]])))
        remaining = rest[~overlapping & ~contained]
    return kept


def _fused_detections(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NMS, then each kept box becomes the probability-weighted mean of the boxes it suppressed by IoU:
    neighbouring windows vote on the object's extent, which localises better than the single best window."""
    groups = _suppress(boxes, scores, NMS_IOU, 0.8)
    fused = np.zeros((len(groups), 4))
    for row, (_, members) in enumerate(groups):
        weight = _sigmoid(scores[members])
        fused[row] = (boxes[members] * weight[:, None]).sum(axis=0) / weight.sum()
    return fused, np.asarray(scores)[[kept for kept, _ in groups]]


# --------------------------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class _LevelScan:
    maps: _Maps
    scores: np.ndarray  # (ny, nx, outputs) linear outputs: label scores, then box-regression deltas
    windows: np.ndarray  # (ny*nx, 4) boxes in working pixels, row-major over (y, x)


def _scan(image: Image.Image, geometry: _Geometry, weights: np.ndarray, bias: np.ndarray) -> list[_LevelScan]:
    scans = []
    for level_size in geometry.levels(*image.size):
        maps = _feature_maps(_resize(image, level_size))
        if maps.rows < TEMPLATE or maps.cols < TEMPLATE:
            continue
        scores = _score_maps(maps, weights, bias)
        scans.append(_LevelScan(maps, scores, _level_windows(maps, image.size, level_size)))
    return scans


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    # reducing_gap: shrink by an integer factor with a box filter first, then resample (much faster).
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _level_windows(maps: _Maps, work_size: tuple[int, int], level_size: tuple[int, int]) -> np.ndarray:
    sx, sy = level_size[0] / work_size[0], level_size[1] / work_size[1]
    ny, nx = maps.rows - TEMPLATE + 1, maps.cols - TEMPLATE + 1
    ys, xs = np.mgrid[0:ny, 0:nx]
    windows = np.empty((ny * nx, 4))
    windows[:, 0] = xs.ravel() * CELL / sx
    windows[:, 1] = ys.ravel() * CELL / sy
    windows[:, 2] = TEMPLATE * CELL / sx
    windows[:, 3] = TEMPLATE * CELL / sy
    return windows


def _regression_targets(windows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Box-regression deltas turning each window into its box: centre shift / size, log size ratio."""
    return np.stack(
        [
            (boxes[:, 0] + boxes[:, 2] / 2 - windows[:, 0] - windows[:, 2] / 2) / windows[:, 2],
            (boxes[:, 1] + boxes[:, 3] / 2 - windows[:, 1] - windows[:, 3] / 2) / windows[:, 3],
            np.log(boxes[:, 2] / windows[:, 2]),
            np.log(boxes[:, 3] / windows[:, 3]),
        ],
        axis=1,
    )


def _apply_regression(windows: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    deltas = np.clip(
        deltas,
        [-MAX_SHIFT, -MAX_SHIFT, -MAX_LOG_SCALE, -MAX_LOG_SCALE],
        [MAX_SHIFT, MAX_SHIFT, MAX_LOG_SCALE, MAX_LOG_SCALE],
    )
    width = windows[:, 2] * np.exp(deltas[:, 2])
    height = windows[:, 3] * np.exp(deltas[:, 3])
    centre_x = windows[:, 0] + windows[:, 2] * (0.5 + deltas[:, 0])
    centre_y = windows[:, 1] + windows[:, 3] * (0.5 + deltas[:, 1])
    return np.stack([centre_x - width / 2, centre_y - height / 2, width, height], axis=1)


def _label_candidates(
    scans: list[_LevelScan], n_labels: int, label_index: int, min_score: float, regress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (working pixels, refined when `regress`) and linear scores of the windows scoring >= min_score,
    at most MAX_CANDIDATES_PER_LEVEL per level, before NMS."""
    boxes, scores = [np.zeros((0, 4))], [np.zeros(0)]
    for scan in scans:
        outputs = scan.scores.reshape(-1, scan.scores.shape[-1])
        column = outputs[:, label_index]
        chosen = np.flatnonzero(column >= min_score)
        if len(chosen) > MAX_CANDIDATES_PER_LEVEL:
            chosen = chosen[np.argsort(-column[chosen], kind="stable")[:MAX_CANDIDATES_PER_LEVEL]]
        windows = scan.windows[chosen]
        if regress:
            first = n_labels + 4 * label_index
            windows = _apply_regression(windows, outputs[chosen, first : first + 4])
        boxes.append(windows)
        scores.append(column[chosen])
    return np.concatenate(boxes), np.concatenate(scores)


# --------------------------------------------------------------------------------------------- model


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -40, 40)))


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


@dataclass
class Model:
    labels: list[str]
    weights: np.ndarray  # (FEATURE_DIM, labels) on raw features
    bias: np.ndarray  # (labels,)
    regression: np.ndarray  # (FEATURE_DIM, 4 * labels): box deltas per label
    regression_bias: np.ndarray  # (4 * labels,)
    calibration: np.ndarray  # (labels, 2): confidence = 100 * sigmoid(a * score + b)
    geometry: _Geometry
    info: dict[str, object] = field(default_factory=dict)  # training statistics, kept in the archive

    def detect(
        self, image: Image.Image, min_confidence: float = 0.0, max_results: int = 100
    ) -> list[Detection]:
        """Detections best first, confidence >= min_confidence (0-100), boxes as ratios of `image`."""
        if not 0.0 <= min_confidence <= 100.0:
            raise ValueError(f"min_confidence must be within 0-100, got {min_confidence}")
        if max_results < 1:
            raise ValueError(f"max_results must be at least 1, got {max_results}")
        work, factor = _working_image(image)
        scans = _scan(work, self.geometry, *self._linear())
        # Candidates always start at the same floor so that boxes do not depend on min_confidence.
        floor = CANDIDATE_FLOOR / 100.0
        detections = []
        width, height = image.size
        for label_index, label in enumerate(self.labels):
            a, b = self.calibration[label_index]
            boxes, scores = _label_candidates(
                scans, len(self.labels), label_index, (_logit(floor) - b) / a, regress=True
            )
            fused, fused_scores = _fused_detections(boxes, scores)
            for box, score in zip(fused / factor, fused_scores.tolist(), strict=True):
                left, top, box_w, box_h = box.tolist()
                confidence = 100.0 * float(_sigmoid(np.array(a * score + b)))
                detections.append(_ratio_detection(label, confidence, left, top, box_w, box_h, width, height))
        detections = [
            d for d in detections if d.confidence >= min_confidence and d.width > 0 and d.height > 0
        ]
        detections.sort(key=lambda d: (-d.confidence, d.label, d.top, d.left))
        return detections[:max_results]

    def _linear(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.concatenate([self.weights, self.regression], axis=1),
            np.concatenate([self.bias, self.regression_bias]),
        )

    def to_bytes(self) -> bytes:
        """A deterministic .npz archive (fixed timestamps, no pickled objects)."""
        header = {
            "format": "labelloop-detector",
            "version": FORMAT_VERSION,
            "labels": self.labels,
            "cell": CELL,
            "template": TEMPLATE,
            "max_side": MAX_SIDE,
            "feature_dim": FEATURE_DIM,
            "geometry": {
                "min_size": self.geometry.min_size,
                "max_size": self.geometry.max_size,
                "aspects": list(self.geometry.aspects),
            },
            "info": self.info,
        }
        arrays = {"header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)}
        arrays.update({name: getattr(self, name).astype(np.float64) for name in _ARRAYS})
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(entry, "w") as handle:
                    np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Model:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in ("header", *_ARRAYS)}
            header = json.loads(arrays["header"].tobytes().decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"not a labelloop detector model: {exc}") from exc
        _check_header(header)
        labels = [str(label) for label in header["labels"]]
        n = len(labels)
        expected = {
            "weights": (FEATURE_DIM, n),
            "bias": (n,),
            "regression": (FEATURE_DIM, 4 * n),
            "regression_bias": (4 * n,),
            "calibration": (n, 2),
        }
        wrong = {name: arrays[name].shape for name, shape in expected.items() if arrays[name].shape != shape}
        if wrong:
            raise ModelFormatError(f"model arrays do not match its {n} label(s): {wrong}")
        geometry = header["geometry"]
        return cls(
            labels=labels,
            **{name: arrays[name] for name in _ARRAYS},
            geometry=_Geometry(
                float(geometry["min_size"]),
                float(geometry["max_size"]),
                tuple(float(a) for a in geometry["aspects"]),
            ),
            info=dict(header.get("info", {})),
        )


_ARRAYS = ("weights", "bias", "regression", "regression_bias", "calibration")


def _check_header(header: object) -> None:
    if not isinstance(header, dict) or header.get("format") != "labelloop-detector":
        raise ModelFormatError("not a labelloop detector model: missing or wrong format marker")
    if header.get("version") != FORMAT_VERSION:
        raise ModelFormatError(
            f"unsupported model format version {header.get('version')!r} (this code reads {FORMAT_VERSION})"
        )
    expected = {"cell": CELL, "template": TEMPLATE, "max_side": MAX_SIDE, "feature_dim": FEATURE_DIM}
    mismatched = {k: header.get(k) for k, v in expected.items() if header.get(k) != v}
    if mismatched:
        raise ModelFormatError(f"model was built with other feature settings: {mismatched}")
    if not isinstance(header.get("labels"), list) or not header["labels"]:
        raise ModelFormatError("model has no labels")


def _ratio_detection(
    label: str,
    confidence: float,
    left: float,
    top: float,
    box_w: float,
    box_h: float,
    width: int,
    height: int,
) -> Detection:
    x0, y0 = min(max(left / width, 0.0), 1.0), min(max(top / height, 0.0), 1.0)
    x1, y1 = min(max((left + box_w) / width, 0.0), 1.0), min(max((top + box_h) / height, 0.0), 1.0)
    return Detection(
        label=label,
        confidence=round(confidence, 3),
        left=round(x0, 6),
        top=round(y0, 6),
        width=round(x1 - x0, 6),
        height=round(y1 - y0, 6),
    )


# --------------------------------------------------------------------------------------------- training


def split(
    samples: Sequence[Sample], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic train/test split (like DistributeDatasetEntries): `test_fraction` of the samples,
    at least one when there are two or more, go to the test set; both keep the input order."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    count = len(samples)
    n_test = min(count - 1, max(1, round(count * test_fraction))) if count >= 2 else 0
    chosen = set(np.random.default_rng(seed).permutation(count)[:n_test].tolist())
    train_set = [s for i, s in enumerate(samples) if i not in chosen]
    test_set = [s for i, s in enumerate(samples) if i in chosen]
    return train_set, test_set


@dataclass
class _Pool:
    """Training windows: features, max IoU with each label's boxes, and which label a crop is positive for."""

    features: list[np.ndarray] = field(default_factory=list)
    ious: list[np.ndarray] = field(default_factory=list)
    positive_for: list[np.ndarray] = field(default_factory=list)

    def add(self, features: np.ndarray, ious: np.ndarray, positive_for: int = -1) -> None:
        if len(features):
            self.features.append(features)
            self.ious.append(ious)
            self.positive_for.append(np.full(len(features), positive_for))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.concatenate(self.features), np.concatenate(self.ious), np.concatenate(self.positive_for)


def train(
    samples: Sequence[Sample], labels: Sequence[str], *, seed: int = 0, progress: Progress | None = None
) -> Model:
    """Trains one-vs-rest window classifiers for `labels` from pixel boxes (left, top, width, height)."""
    report = progress or (lambda _message: None)
    labels = list(labels)
    prepared = _prepare(samples, labels)
    rng = np.random.default_rng(seed)
    geometry = _learn_geometry(
        [
            (math.sqrt(box[2] * box[3]) / math.sqrt(p.image.width * p.image.height), box[2] / box[3])
            for p in prepared
            for _, box in p.boxes
        ]
    )
    report(
        f"training on {len(prepared)} images, {sum(len(p.boxes) for p in prepared)} boxes, "
        f"{len(labels)} label(s); aspects {list(geometry.aspects)}"
    )
    pool = _Pool()
    shifted: list[tuple[np.ndarray, np.ndarray, int]] = []
    for item in prepared:
        _add_positive_crops(pool, item, len(labels), rng)
        _add_random_negatives(pool, item, geometry, len(labels), rng)
        shifted.extend(_regression_samples(item, rng))
    weights, bias = _fit_all(pool, len(labels))
    for round_no in range(1, MINING_ROUNDS + 1):
        mined = sum(
            _mine_hard_negatives(pool, item, geometry, weights, bias, len(labels)) for item in prepared
        )
        report(f"hard-negative mining round {round_no}: {mined} new negatives")
        if mined == 0:
            break
        weights, bias = _fit_all(pool, len(labels), warm=(weights, bias))
    regression, regression_bias = _fit_regression(shifted, len(labels))
    model = Model(
        labels=labels,
        weights=weights,
        bias=bias,
        regression=regression,
        regression_bias=regression_bias,
        calibration=np.tile([1.0, 0.0], (len(labels), 1)),
        geometry=geometry,
    )
    model.calibration = _calibrate(prepared, model)
    report("fitted box regression and calibrated confidences")
    features, _, positive_for = pool.arrays()
    model.info = {
        "training_images": len(prepared),
        "training_boxes": sum(len(p.boxes) for p in prepared),
        "training_windows": len(features),
        "positive_windows": int((positive_for >= 0).sum()),
        "seed": seed,
    }
    return model


def _prepare(samples: Sequence[Sample], labels: list[str]) -> list[_Prepared]:
    if not labels or len(set(labels)) != len(labels):
        raise TrainingError(f"labels must be a non-empty list of distinct names, got {labels}")
    if not samples:
        raise TrainingError("no training images")
    index = {label: i for i, label in enumerate(labels)}
    prepared = []
    for number, sample in enumerate(samples):
        name = sample.name or f"sample #{number}"
        work, factor = _working_image(sample.image)
        boxes = []
        for label, (left, top, box_w, box_h) in sample.boxes:
            if label not in index:
                raise TrainingError(f"{name}: box label {label!r} is not one of {labels}")
            if (
                box_w <= 0
                or box_h <= 0
                or left < 0
                or top < 0
                or left + box_w > sample.image.width
                or top + box_h > sample.image.height
            ):
                raise TrainingError(
                    f"{name}: box {(left, top, box_w, box_h)} is empty or outside the "
                    f"{sample.image.width}x{sample.image.height} image"
                )
            boxes.append((index[label], np.array([left, top, box_w, box_h], dtype=np.float64) * factor))
        prepared.append(_Prepared(work, factor, boxes, sample.image.size))
    missing = [
        label for i, label in enumerate(labels) if not any(b[0] == i for p in prepared for b in p.boxes)
    ]
    if missing:
        raise TrainingError(f"no training boxes for label(s) {missing}")
    return prepared


def _label_ious(item: _Prepared, windows: np.ndarray, n_labels: int) -> np.ndarray:
    ious = np.zeros((len(windows), n_labels))
    for label_index in range(n_labels):
        boxes = np.array([box for i, box in item.boxes if i == label_index]).reshape(-1, 4)
        if len(boxes):
            ious[:, label_index] = _box_ious(windows, boxes).max(axis=1)
    return ious


def _add_positive_crops(pool: _Pool, item: _Prepared, n_labels: int, rng: np.random.Generator) -> None:
    """Each box plus jittered and mirrored copies (the template is warped onto the box)."""
    for label_index, box in item.boxes:
        left, top, box_w, box_h = box.tolist()
        variants = [(0.0, 0.0, 1.0, False), (0.0, 0.0, 1.0, True)]
        variants += [
            (
                float(rng.uniform(-0.07, 0.07)),
                float(rng.uniform(-0.07, 0.07)),
                float(rng.uniform(0.92, 1.08)),
                bool(rng.integers(0, 2)),
            )
            for _ in range(4)
        ]
        features, windows = [], []
        for shift_x, shift_y, scale, mirror in variants:
            w, h = box_w * scale, box_h * scale
            window = (
                left + box_w / 2 + shift_x * box_w - w / 2,
                top + box_h / 2 + shift_y * box_h - h / 2,
                w,
                h,
            )
            features.append(_crop_features(item.image, window, mirror))
            windows.append(window)
        pool.add(np.asarray(features), _label_ious(item, np.asarray(windows), n_labels), label_index)


def _crop_features(
    image: Image.Image, window: tuple[float, float, float, float], mirror: bool = False
) -> np.ndarray:
    """Features of one window, computed on the window warped to the template with a one-cell margin
    (the same layout as a window found by scanning)."""
    x, y, w, h = window
    margin_x, margin_y = w / TEMPLATE, h / TEMPLATE
    crop_px = (TEMPLATE + 2) * CELL
    crop = _crop(image, (x - margin_x, y - margin_y, x + w + margin_x, y + h + margin_y), (crop_px, crop_px))
    if mirror:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _window_features(_feature_maps(crop), np.array([1]), np.array([1]))[0]


def _crop(
    image: Image.Image, region: tuple[float, float, float, float], size: tuple[int, int]
) -> Image.Image:
    """Resamples `region` (may extend past the image: edge pixels are repeated) to `size`."""
    x0, y0, x1, y1 = region
    overflow = max(0.0, -x0, -y0, x1 - image.width, y1 - image.height)
    pad = math.ceil(overflow) + 2 if overflow > 0 else 0
    if pad:
        image = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
    return image.resize(
        size, Image.Resampling.BILINEAR, box=(x0 + pad, y0 + pad, x1 + pad, y1 + pad), reducing_gap=2.0
    )


def _add_random_negatives(
    pool: _Pool,
    item: _Prepared,
    geometry: _Geometry,
    n_labels: int,
    rng: np.random.Generator,
    per_image: int = 60,
) -> None:
    """Random windows of the shapes the model looks for that overlap no box (IoU < 0.3)."""
    width, height = item.image.size
    side = math.sqrt(width * height)
    windows = []
    for _ in range(per_image * 2):
        size = side * math.exp(rng.uniform(math.log(geometry.min_size), math.log(geometry.max_size)))
        aspect = float(rng.choice(geometry.aspects))
        w, h = min(size * math.sqrt(aspect), width), min(size / math.sqrt(aspect), height)
        windows.append((float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h))
    candidates = np.asarray(windows)
    ious = _label_ious(item, candidates, n_labels)
    keep = np.flatnonzero(ious.max(axis=1) < NEGATIVE_IOU)[:per_image]
    if len(keep):
        features = np.asarray([_crop_features(item.image, tuple(candidates[i])) for i in keep.tolist()])
        pool.add(features, ious[keep])


def _regression_samples(
    item: _Prepared, rng: np.random.Generator, per_box: int = 8
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Windows misplaced the way the scanning grid misplaces them, with the deltas back to their box."""
    samples = []
    for label_index, box in item.boxes:
        left, top, box_w, box_h = box.tolist()
        windows, mirrors = [], []
        for _ in range(per_box):
            scale, stretch = math.exp(rng.uniform(-0.15, 0.15)), math.exp(rng.uniform(-0.2, 0.2))
            w, h = box_w * scale * stretch, box_h * scale / stretch
            centre_x = left + box_w * (0.5 + rng.uniform(-0.12, 0.12))
            centre_y = top + box_h * (0.5 + rng.uniform(-0.12, 0.12))
            windows.append((centre_x - w / 2, centre_y - h / 2, w, h))
            mirrors.append(bool(rng.integers(0, 2)))
        targets = _regression_targets(np.asarray(windows), np.tile(box, (per_box, 1)))
        for window, mirror, target in zip(windows, mirrors, targets, strict=True):
            if mirror:  # the mirrored window sees its box on the other side
                target = target * np.array([-1.0, 1.0, 1.0, 1.0])
            samples.append((_crop_features(item.image, window, mirror), target, label_index))
    return samples


def _fit_regression(
    samples: list[tuple[np.ndarray, np.ndarray, int]], n_labels: int, l2: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression from window features to box deltas, per label, on standardised features."""
    weights = np.zeros((FEATURE_DIM, 4 * n_labels))
    bias = np.zeros(4 * n_labels)
    for label_index in range(n_labels):
        rows = [(f, t) for f, t, i in samples if i == label_index]
        features = np.asarray([f for f, _ in rows], dtype=np.float64)
        targets = np.asarray([t for _, t in rows])
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-2
        z = (features - mean) / scale
        target_mean = targets.mean(axis=0)
        gram = z.T @ z + l2 * len(z) * np.eye(FEATURE_DIM)
        solution = np.linalg.solve(gram, z.T @ (targets - target_mean)) / scale[:, None]
        columns = slice(4 * label_index, 4 * label_index + 4)
        weights[:, columns] = solution
        bias[columns] = target_mean - mean @ solution
    return weights, bias


def _mine_hard_negatives(
    pool: _Pool,
    item: _Prepared,
    geometry: _Geometry,
    weights: np.ndarray,
    bias: np.ndarray,
    n_labels: int,
    per_image: int = 40,
    margin: float = -1.0,
) -> int:
    """Adds the highest-scoring windows that do not overlap a box of the label they fire for."""
    added = 0
    candidates: list[tuple[float, int, int]] = []  # (score, level, flat index)
    scans = _scan(item.image, geometry, weights, bias)
    for level, scan in enumerate(scans):
        flat = scan.scores.reshape(-1, n_labels)
        ious = _label_ious(item, scan.windows, n_labels)
        hard = np.where(ious < NEGATIVE_IOU, flat, -np.inf).max(axis=1)
        for index in np.flatnonzero(hard > margin).tolist():
            candidates.append((float(hard[index]), level, index))
    candidates.sort(key=lambda c: -c[0])
    for _, level, index in candidates[:per_image]:
        scan = scans[level]
        nx = scan.maps.cols - TEMPLATE + 1
        features = _window_features(scan.maps, np.array([index // nx]), np.array([index % nx]))
        pool.add(features, _label_ious(item, scan.windows[index : index + 1], n_labels))
        added += 1
    return added


def _fit_all(
    pool: _Pool, n_labels: int, warm: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    features, ious, positive_for = pool.arrays()
    weights = np.zeros((FEATURE_DIM, n_labels))
    bias = np.zeros(n_labels)
    for label_index in range(n_labels):
        positive = positive_for == label_index
        negative = (positive_for != label_index) & (ious[:, label_index] < NEGATIVE_IOU)
        rows = positive | negative
        start = None if warm is None else (warm[0][:, label_index], float(warm[1][label_index]))
        weights[:, label_index], bias[label_index] = _fit_logistic(
            features[rows], positive[rows].astype(np.float64), start
        )
    return weights, bias


def _fit_logistic(
    features: np.ndarray,
    targets: np.ndarray,
    start: tuple[np.ndarray, float] | None,
    l2: float = 0.05,
    iterations: int = 250,
) -> tuple[np.ndarray, float]:
    """Class-balanced L2-regularised logistic regression by accelerated gradient descent on standardised
    features; returns weights and bias for the raw features."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-2
    z = ((features - mean) / scale).astype(np.float32)
    n_pos = max(targets.sum(), 1.0)
    n_neg = max(len(targets) - targets.sum(), 1.0)
    sample_weight = np.where(targets > 0, 0.5 / n_pos, 0.5 / n_neg)
    lipschitz = 0.25 * _largest_singular_value(z, sample_weight) ** 2 + l2
    step = 1.0 / lipschitz
    if start is None:
        w, b = np.zeros(z.shape[1]), 0.0
    else:
        w, b = start[0] * scale, start[1] + float(start[0] @ mean)
    w_prev, b_prev = w.copy(), b
    for iteration in range(1, iterations + 1):
        momentum = (iteration - 1) / (iteration + 2)
        v_w, v_b = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        residual = (_sigmoid(_matvec(z, v_w) + v_b) - targets) * sample_weight
        grad_w = _vecmat(residual, z) + l2 * v_w
        grad_b = float(residual.sum())
        w_prev, b_prev = w, b
        w, b = v_w - step * grad_w, v_b - step * grad_b
    raw_w = w / scale
    return raw_w, b - float(raw_w @ mean)


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    # einsum runs single-threaded: multi-threaded BLAS matrix-vector products stall on busy 2-core hosts.
    return np.einsum("ij,j->i", matrix, vector.astype(matrix.dtype)).astype(np.float64)


def _vecmat(vector: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return np.einsum("i,ij->j", vector.astype(matrix.dtype), matrix).astype(np.float64)


def _largest_singular_value(z: np.ndarray, sample_weight: np.ndarray, iterations: int = 20) -> float:
    """Largest singular value of diag(sqrt(weight)) @ z, by power iteration (deterministic start)."""
    weighted = z * np.sqrt(sample_weight)[:, None].astype(np.float32)
    vector = np.ones(z.shape[1], dtype=np.float32) / math.sqrt(z.shape[1])
    value = 0.0
    for _ in range(iterations):
        product = _vecmat(_matvec(weighted, vector), weighted)
        value = float(np.linalg.norm(product))
        if value == 0.0:
            return 1.0
        vector = product / value
    return math.sqrt(value)


def _calibrate(prepared: list[_Prepared], model: Model) -> np.ndarray:
    """Platt scaling per label on the training images' detections after NMS (true = IoU >= 0.5 match)."""
    n_labels = len(model.labels)
    scores: list[list[float]] = [[] for _ in range(n_labels)]
    outcomes: list[list[float]] = [[] for _ in range(n_labels)]
    for item in prepared:
        scans = _scan(item.image, model.geometry, *model._linear())
        for label_index in range(n_labels):
            boxes, values = _label_candidates(scans, n_labels, label_index, -4.0, regress=True)
            truth = np.array([box for i, box in item.boxes if i == label_index]).reshape(-1, 4)
            fused, fused_scores = _fused_detections(boxes, values)
            scores[label_index].extend(fused_scores.tolist())
            outcomes[label_index].extend(_greedy_match(fused, truth))
    return np.array([_platt(np.array(s), np.array(o)) for s, o in zip(scores, outcomes, strict=True)])


def _greedy_match(boxes: np.ndarray, truth: np.ndarray) -> list[float]:
    """1.0 for each box (in order) matching a still unmatched truth box at IoU >= 0.5, else 0.0."""
    used: set[int] = set()
    outcome = []
    ious = _box_ious(boxes, truth)
    for row in ious:
        candidates = [(iou, j) for j, iou in enumerate(row.tolist()) if j not in used and iou >= POSITIVE_IOU]
        if candidates:
            used.add(max(candidates)[1])
            outcome.append(1.0)
        else:
            outcome.append(0.0)
    return outcome


def _platt(scores: np.ndarray, outcomes: np.ndarray, iterations: int = 200) -> tuple[float, float]:
    """Fits confidence = sigmoid(a * score + b) with Platt's smoothed targets; identity when degenerate."""
    if len(scores) == 0 or outcomes.sum() == 0 or outcomes.sum() == len(outcomes):
        return (1.0, 0.0)
    n_pos, n_neg = outcomes.sum(), len(outcomes) - outcomes.sum()
    targets = np.where(outcomes > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 1.0, 0.0
    for _ in range(iterations):  # Newton's method on two parameters, lightly regularised
        p = _sigmoid(a * scores + b)
        r = p - targets
        w = p * (1 - p) + 1e-9
        g = np.array([r @ scores + 1e-3 * (a - 1), r.sum()])
        h = np.array([[w @ (scores * scores) + 1e-3, w @ scores], [w @ scores, w.sum() + 1e-6]])
        delta = np.linalg.solve(h, g)
        a, b = a - float(delta[0]), b - float(delta[1])
        if abs(delta).max() < 1e-8:
            break
    return (float(np.clip(a, 0.05, 20.0)), float(np.clip(b, -40.0, 40.0)))
