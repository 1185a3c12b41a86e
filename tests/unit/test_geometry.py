import math

import pytest

from labelloop_core.geometry import PixelBox, RatioBox, clamp, ratio_to_pixels


def test_ratio_box_scales_to_pixels_by_rounding_edges() -> None:
    box = ratio_to_pixels(RatioBox(0.1, 0.25, 0.5, 0.5), 2658, 2000)
    assert box == PixelBox(266, 500, 1329, 1000)
    assert box.right == round(0.6 * 2658)


def test_adjacent_ratio_boxes_stay_adjacent_in_pixels() -> None:
    left = ratio_to_pixels(RatioBox(0.0, 0.0, 1 / 3, 1.0), 100, 100)
    right = ratio_to_pixels(RatioBox(1 / 3, 0.0, 1 / 3, 1.0), 100, 100)
    assert left.right == right.left


def test_clamp_cuts_boxes_to_the_image() -> None:
    assert clamp(PixelBox(-10, -20, 50, 60), 640, 480) == PixelBox(0, 0, 40, 40)
    assert clamp(PixelBox(600, 400, 100, 100), 640, 480) == PixelBox(600, 400, 40, 80)
    assert clamp(PixelBox(10, 10, 20, 20), 640, 480) == PixelBox(10, 10, 20, 20)


@pytest.mark.parametrize(
    "box",
    [PixelBox(700, 10, 50, 50), PixelBox(-60, 10, 50, 50), PixelBox(10, 10, 0, 5), PixelBox(10, 10, 5, -3)],
)
def test_clamp_returns_none_when_nothing_of_positive_size_remains(box: PixelBox) -> None:
    assert clamp(box, 640, 480) is None


def test_pixel_box_from_float_numbers() -> None:
    assert PixelBox.from_numbers(10.4, 20.6, 30.2, 40.5) == PixelBox(10, 21, 31, 40)
    with pytest.raises(ValueError):
        PixelBox.from_numbers(math.nan, 0, 1, 1)


def test_ratio_box_rejects_non_numbers() -> None:
    with pytest.raises(ValueError):
        RatioBox(0.1, math.inf, 0.2, 0.2)
    with pytest.raises(ValueError):
        RatioBox(0.1, True, 0.2, 0.2)
