"""Two reviewers per image (`TaskCount=2`) in the built-in portal, in a real headless Chromium: two new
reviewers sign in against the local stack's Cognito (each sets the password the first sign-in asks
for), both take the same image's task, each corrects the model's box a little differently and draws
the box the model missed, and submits. The stack then writes one label line for the image with each
object's combined box and its agreement as the object's `confidence` (issue 8)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from labelloop_local.stack.local_stack import LocalStack
from tests.support.paths import TEMPLATE_PATH
from tests.support.reviewers import invite, photo_with_slices, request_review

pytestmark = pytest.mark.browser

LABEL = "pepperoni pizza slice"
SIZE = (800, 600)
MODEL_BOX = (100, 80, 300, 200)  # left, top, width, height in image pixels
MISSED = (500, 320, 200, 150)  # a second slice the model did not find
FILE_NAME = "two-slices.jpg"


@dataclass
class Reviewer:
    email: str
    temporary_password: str
    new_password: str


@dataclass
class Review:
    stack: LocalStack
    task_id: str
    reviewers: tuple[Reviewer, Reviewer]


@pytest.fixture
def review(tmp_path: Path) -> Iterator[Review]:
    with LocalStack(
        TEMPLATE_PATH,
        data_dir=tmp_path / "stack",
        params={"TaskCount": 2},
        time_scale=1 / 6000,
        schedules={},
    ) as stack:
        assert stack.review_backend == "builtin"
        task_id = request_review(
            stack,
            f"photos/kitchen/{FILE_NAME}",
            photo_with_slices(SIZE, [MODEL_BOX, MISSED], quality=80),
            SIZE,
            [(LABEL, 35.0, MODEL_BOX)],
        )
        reviewers = tuple(
            Reviewer(email, invite(stack, email), f"Correct-Horse-{index}-42!")
            for index, email in enumerate(("ana.first@example.com", "ben.second@example.com"))
        )
        yield Review(stack, task_id, (reviewers[0], reviewers[1]))


def _sign_in(page: Any, stack: LocalStack, reviewer: Reviewer) -> None:
    page.goto(stack.portal_url)
    page.fill("#username", reviewer.email)
    page.fill("#password", reviewer.temporary_password)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#new-password:not([hidden])")  # the first sign-in asks for a new password
    page.fill("#new-password-input", reviewer.new_password)
    page.fill("#new-password-repeat", reviewer.new_password)
    page.click("#new-password-form button[type=submit]")
    page.wait_for_selector('body[data-ready="true"]')


def _select_box(page: Any, index: int) -> None:
    """Tab through the boxes until box `index` has the focus (and so is selected)."""
    page.locator("#canvas").focus()
    for _ in range(4):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.boxIndex") == str(index):
            return
    raise AssertionError(f"Tab never reached box {index}")


def _draw(page: Any, box: tuple[int, int, int, int]) -> None:
    """Drag a new box over `box` (image pixels) at the zoom the portal shows the image at."""
    image = dict(page.locator("#image").bounding_box())
    zoom = image["width"] / SIZE[0]
    left, top, width, height = box
    start = (image["x"] + left * zoom, image["y"] + top * zoom)
    end = (image["x"] + (left + width) * zoom, image["y"] + (top + height) * zoom)
    page.keyboard.press("n")  # new-box mode: a drag draws even where a box already is
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=3)
    page.mouse.move(*end, steps=3)
    page.mouse.up()


def _label_line(stack: LocalStack, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
    assert stack.stack is not None
    s3 = stack.client("s3")
    deadline = time.monotonic() + timeout
    while True:
        listed = s3.list_objects_v2(Bucket=stack.stack.bucket, Prefix="labels/").get("Contents", [])
        keys = [item["Key"] for item in listed]
        if keys:
            assert keys == [f"labels/{task_id}.json"]
            return dict(json.loads(s3.get_object(Bucket=stack.stack.bucket, Key=keys[0])["Body"].read()))
        assert time.monotonic() < deadline, f"no label line within {timeout} s"
        time.sleep(0.1)


def _submitted_boxes(stack: LocalStack, task_id: str) -> list[list[tuple[int, int, int, int]]]:
    """Each reviewer's boxes as output.json recorded them, in the order they answered."""
    assert stack.stack is not None
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.stack.bucket, Prefix="reviews/builtin/").get("Contents", [])
    (key,) = [item["Key"] for item in listed if f"/{task_id}/output.json" in item["Key"]]
    document = json.loads(s3.get_object(Bucket=stack.stack.bucket, Key=key)["Body"].read())
    return [
        [
            (box["left"], box["top"], box["width"], box["height"])
            for box in answer["answerContent"]["annotatedResult"]["boundingBoxes"]
        ]
        for answer in document["humanAnswers"]
    ]


def test_two_reviewers_who_agree_give_one_label_line_with_the_combined_boxes_and_their_agreement(
    browser: Any, review: Review
) -> None:
    stack = review.stack
    contexts = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in review.reviewers]
    try:
        first, second = (context.new_page() for context in contexts)
        # Both sign in and hold the same image's task at once: one slot each.
        for page, reviewer in zip((first, second), review.reviewers, strict=True):
            _sign_in(page, stack, reviewer)
            assert page.locator("#file-name").inner_text() == FILE_NAME
            assert page.locator("[data-box-index]").count() == 1  # the model's box, pre-drawn

        # Ana moves the model's box 10 px right, Ben 4 px down; both draw the missed slice.
        _select_box(first, 0)
        first.keyboard.press("Shift+ArrowRight")
        _draw(first, MISSED)
        _select_box(second, 0)
        for _ in range(4):
            second.keyboard.press("ArrowDown")
        _draw(second, (MISSED[0] + 6, MISSED[1] + 4, MISSED[2] - 4, MISSED[3] + 2))
        for page in (first, second):
            assert page.locator("[data-box-index]").count() == 2
            page.keyboard.press("Escape")
            page.click("#submit")
            expect(page.locator("#idle")).to_be_visible()  # no task left for this reviewer

        line = _label_line(stack, review.task_id)
    finally:
        for context in contexts:
            context.close()

    assert stack.stack is not None
    ana, ben = _submitted_boxes(stack, review.task_id)
    moved_right = (MODEL_BOX[0] + 10, *MODEL_BOX[1:])
    moved_down = (MODEL_BOX[0], MODEL_BOX[1] + 4, *MODEL_BOX[2:])
    assert ana[0] == moved_right and ben[0] == moved_down
    assert line["source-ref"] == f"s3://{stack.stack.bucket}/photos/kitchen/{FILE_NAME}"
    attribute = next(
        name for name, value in line.items() if isinstance(value, dict) and "annotations" in value
    )
    annotations = line[attribute]["annotations"]
    objects = line[f"{attribute}-metadata"]["objects"]
    assert len(annotations) == 2 and len(objects) == 2  # both objects kept: both reviewers drew them
    boxes = [(item["left"], item["top"], item["width"], item["height"]) for item in annotations]

    # The model's box: the median of the two corrections' edges (105, 82, 300, 200); IoU of each
    # with it is 58410 / 61590, so the agreement (2 of 2 reviewers x mean IoU) is 0.948.
    assert boxes[0] == (105, 82, 300, 200)
    assert objects[0]["confidence"] == 0.948
    # The drawn box lies between the two drawings, edge by edge; they overlap well, not exactly.
    drawn = [ana[1], ben[1]]
    for edge in range(2):
        assert min(box[edge] for box in drawn) <= boxes[1][edge] <= max(box[edge] for box in drawn)
    right_edges = [box[0] + box[2] for box in drawn]
    assert min(right_edges) - 1 <= boxes[1][0] + boxes[1][2] <= max(right_edges) + 1
    assert 0.75 < objects[1]["confidence"] < 1.0
    assert all(item["class_id"] == annotations[0]["class_id"] for item in annotations)
