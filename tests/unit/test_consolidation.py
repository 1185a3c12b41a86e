"""Consolidation of several reviewers' boxes: IoU matching, majority, combined coordinates, agreement."""

from __future__ import annotations

import pytest

from labelloop_core.consolidation import MATCH_IOU, consolidate, iou
from labelloop_core.geometry import PixelBox

SLICE = "pizza"
CRUST = "crust"


def box(left: int, top: int, width: int = 100, height: int = 80) -> PixelBox:
    return PixelBox(left, top, width, height)


def test_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    assert iou(box(0, 0), box(0, 0)) == 1.0
    assert iou(box(0, 0), box(500, 500)) == 0.0
    assert iou(PixelBox(0, 0, 100, 100), PixelBox(50, 0, 100, 100)) == pytest.approx(1 / 3)


def test_one_reviewer_keeps_every_box_with_full_confidence() -> None:
    result = consolidate([[(SLICE, box(10, 10)), (SLICE, box(300, 10))]])
    assert result.boxes == [(SLICE, box(10, 10)), (SLICE, box(300, 10))]
    assert result.confidences == [1.0, 1.0]
    assert (result.reviewers, result.agreement, result.low_agreement) == (1, 1.0, False)


def test_boxes_two_of_three_reviewers_drew_are_kept_with_their_median_edges() -> None:
    first = [(SLICE, box(100, 100)), (SLICE, box(600, 100))]
    second = [(SLICE, box(104, 96)), (SLICE, box(610, 104))]
    third = [(SLICE, box(98, 102))]  # missed the second slice
    result = consolidate([first, second, third])
    assert result.boxes == [(SLICE, PixelBox(100, 100, 100, 80)), (SLICE, PixelBox(605, 102, 100, 80))]
    three, two = result.kept
    assert (three.votes, two.votes) == (3, 2)
    assert three.confidence > 0.9 and 0.5 < two.confidence < 2 / 3
    assert result.dropped == ()
    assert result.low_agreement  # one object was drawn by only two of three


def test_a_box_only_one_of_two_reviewers_drew_is_dropped_and_recorded() -> None:
    result = consolidate([[(SLICE, box(0, 0)), (SLICE, box(400, 0))], [(SLICE, box(2, 2))]])
    assert result.boxes == [(SLICE, PixelBox(1, 1, 100, 80))]
    (dropped,) = result.dropped
    assert (dropped.label, dropped.box, dropped.votes) == (SLICE, box(400, 0), 1)
    assert result.agreement < 0.5 and result.low_agreement


def test_boxes_of_different_labels_never_match() -> None:
    result = consolidate([[(SLICE, box(0, 0))], [(CRUST, box(0, 0))]])
    assert result.boxes == []
    assert {item.label for item in result.dropped} == {SLICE, CRUST}
    assert result.agreement == 0.0


def test_boxes_overlapping_less_than_the_threshold_are_different_objects() -> None:
    far = consolidate([[(SLICE, PixelBox(0, 0, 100, 100))], [(SLICE, PixelBox(60, 0, 100, 100))]])
    assert iou(PixelBox(0, 0, 100, 100), PixelBox(60, 0, 100, 100)) < MATCH_IOU
    assert far.boxes == [] and len(far.dropped) == 2


def test_one_reviewers_two_boxes_never_merge_into_one_object() -> None:
    first = [(SLICE, box(0, 0)), (SLICE, box(5, 5))]  # two overlapping slices
    second = [(SLICE, box(1, 1)), (SLICE, box(6, 6))]
    result = consolidate([first, second])
    assert len(result.kept) == 2 and all(item.votes == 2 for item in result.kept)


def test_reviewers_who_agree_the_image_is_empty_agree_fully() -> None:
    result = consolidate([[], [], []])
    assert (result.boxes, result.agreement, result.low_agreement) == ([], 1.0, False)


def test_the_same_answers_always_give_the_same_result() -> None:
    answers = [[(SLICE, box(0, 0)), (CRUST, box(50, 50))], [(CRUST, box(52, 49)), (SLICE, box(3, 1))]]
    assert consolidate(answers) == consolidate(answers)
    with pytest.raises(ValueError, match="at least one"):
        consolidate([])
