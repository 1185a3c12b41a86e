"""Bounding boxes: Rekognition ratios (0-1) and Ground Truth / A2I integer pixels (top-left origin)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RatioBox:
    """A box as DetectCustomLabels returns it: fractions of the image width and height."""

    left: float
    top: float
    width: float
    height: float

    def __post_init__(self) -> None:
        for name in ("left", "top", "width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"ratio box {name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class PixelBox:
    """A box in whole pixels, as manifests and the A2I bounding-box task use."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @classmethod
    def from_numbers(cls, left: float, top: float, width: float, height: float) -> PixelBox:
        """Round edges (not sizes) so that adjacent boxes stay adjacent."""
        values = (left, top, width, height)
        if any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in values):
            raise ValueError(f"box coordinates must be finite numbers, got {values!r}")
        x0, y0 = round(left), round(top)
        return cls(x0, y0, round(left + width) - x0, round(top + height) - y0)

    def to_dict(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "width": self.width, "height": self.height}


def ratio_to_pixels(box: RatioBox, image_width: int, image_height: int) -> PixelBox:
    """Scale a ratio box to pixels; the result may lie partly outside the image (see `clamp`)."""
    return PixelBox.from_numbers(
        box.left * image_width, box.top * image_height, box.width * image_width, box.height * image_height
    )


def clamp(box: PixelBox, image_width: int, image_height: int) -> PixelBox | None:
    """The part of `box` inside the image, or None when nothing of positive size remains."""
    left, top = max(0, box.left), max(0, box.top)
    right, bottom = min(image_width, box.right), min(image_height, box.bottom)
    if right <= left or bottom <= top:
        return None
    return PixelBox(left, top, right - left, bottom - top)
