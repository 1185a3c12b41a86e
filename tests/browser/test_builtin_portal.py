"""The built-in review portal on the local stack, in a real headless Chromium: a new reviewer signs in
against the local stack's Cognito (moto), sets the password the first sign-in asks for, reviews the
lowest-confidence task on a 4000×2667 photo (zoomed to 1:1 and panned, the model's boxes exact),
corrects it with mouse and keyboard, submits, and the next task opens (issue 8)."""

from __future__ import annotations

import json
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
LARGE = (4000, 2667)
REVIEWER = "new.reviewer@example.com"
NEW_PASSWORD = "Correct-Horse-42!"
# The model's boxes on the large photo (left, top, width, height in image pixels) and their confidences.
MODEL_BOXES = [(2710, 1630, 512, 384), (300, 240, 700, 520), (3300, 300, 400, 300)]
CONFIDENCES = [22.4, 31.0, 45.6]


@dataclass
class Reviews:
    stack: LocalStack
    first: str  # the lowest-confidence task: the large photo
    second: str
    temporary_password: str


@pytest.fixture
def reviews(tmp_path: Path) -> Iterator[Reviews]:
    with LocalStack(TEMPLATE_PATH, data_dir=tmp_path / "stack", time_scale=1 / 6000, schedules={}) as stack:
        assert stack.review_backend == "builtin"
        second = request_review(
            stack,
            "photos/kitchen/second-slice.jpg",
            photo_with_slices((800, 600), [], quality=70),
            (800, 600),
            [(LABEL, 50.0, (80, 60, 300, 200))],
        )
        first = request_review(
            stack,
            "photos/kitchen/large-pizza.jpg",
            photo_with_slices(LARGE, [(2700, 1650, 500, 380)], quality=70),
            LARGE,
            [(LABEL, confidence, box) for confidence, box in zip(CONFIDENCES, MODEL_BOXES, strict=True)],
        )
        yield Reviews(stack, first, second, invite(stack, REVIEWER))


def _rect(page: Any, selector: str) -> dict[str, float]:
    return dict(page.locator(selector).bounding_box())


def _box_in_image(page: Any, index: int) -> tuple[float, float, float, float]:
    """Where box `index` is drawn, in image pixels (screen offset from the image, divided by the zoom)."""
    image, box = _rect(page, "#image"), _rect(page, f'[data-box-index="{index}"]')
    zoom = image["width"] / LARGE[0]
    return (
        (box["x"] - image["x"]) / zoom,
        (box["y"] - image["y"]) / zoom,
        box["width"] / zoom,
        box["height"] / zoom,
    )


def _scroll(page: Any) -> tuple[float, float]:
    return tuple(page.locator("#viewport").evaluate("v => [v.scrollLeft, v.scrollTop]"))


def _assert_near(got: tuple[float, ...], expected: tuple[float, ...], tolerance: float) -> None:
    assert all(abs(g - e) <= tolerance for g, e in zip(got, expected, strict=True)), (got, expected)


def _output(stack: LocalStack, task_id: str) -> dict[str, Any]:
    assert stack.stack is not None
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.stack.bucket, Prefix="reviews/builtin/").get("Contents", [])
    (key,) = [item["Key"] for item in listed if f"/{task_id}/output.json" in item["Key"]]
    return dict(json.loads(s3.get_object(Bucket=stack.stack.bucket, Key=key)["Body"].read()))


def test_a_new_reviewer_signs_in_zooms_corrects_the_lowest_confidence_task_and_gets_the_next(
    page: Any, reviews: Reviews
) -> None:
    stack = reviews.stack
    page.goto(stack.portal_url)
    page.fill("#username", REVIEWER)
    page.fill("#password", reviews.temporary_password)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#new-password:not([hidden])")  # the first sign-in asks for a new password
    page.fill("#new-password-input", NEW_PASSWORD)
    page.fill("#new-password-repeat", NEW_PASSWORD)
    page.click("#new-password-form button[type=submit]")
    page.wait_for_selector('body[data-ready="true"]')

    # The lowest confidence first, named by its file, its three low-confidence detections summarized.
    assert page.locator("#file-name").inner_text() == "large-pizza.jpg"
    assert "large-pizza.jpg" in page.title() and reviews.first not in page.title()
    assert reviews.first not in page.locator("#task-heading").inner_text()
    assert page.locator("#reasons li").all_inner_texts() == [
        f"Low confidence: 3 detections of “{LABEL}” at 22–46% (threshold 60%)"
    ]
    assert f"Signed in as {REVIEWER}" in page.locator("#who").inner_text()

    # The model's boxes are pre-drawn where the model put them, at the fit zoom (the photo is shown small)...
    assert page.locator("[data-box-index]").count() == 3
    fit_zoom = _rect(page, "#image")["width"] / LARGE[0]
    assert fit_zoom < 0.3
    for index, box in enumerate(MODEL_BOXES):
        _assert_near(_box_in_image(page, index), box, tolerance=1 / fit_zoom)

    # ...and exact at 1:1, after panning the first box into view with Space+drag.
    page.click("#zoom-actual")
    assert page.locator("#zoom-level").inner_text() == "100%"
    viewport = _rect(page, "#viewport")
    centre = (viewport["x"] + viewport["width"] / 2, viewport["y"] + viewport["height"] / 2)
    target = MODEL_BOXES[0]
    before = _scroll(page)
    page.locator("#canvas").focus()
    page.keyboard.down(" ")
    page.mouse.move(*centre)
    page.mouse.down()
    page.mouse.move(centre[0] - 300, centre[1] - 200, steps=4)
    page.mouse.up()
    page.keyboard.up(" ")
    after = _scroll(page)
    assert after[0] > before[0] and after[1] > before[1]  # the pan scrolled the photo
    page.locator('[data-box-index="0"]').scroll_into_view_if_needed()
    for index, box in enumerate(MODEL_BOXES):
        _assert_near(_box_in_image(page, index), box, tolerance=0.5)

    # Correct the first box at 1:1: drag it 10 px left and 20 px up (image pixels = screen pixels now).
    rect = _rect(page, '[data-box-index="0"]')
    start = (rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] - 5, start[1] - 10, steps=3)
    page.mouse.move(start[0] - 10, start[1] + 20, steps=3)
    page.mouse.up()
    corrected = (target[0] - 10, target[1] + 20, target[2], target[3])
    _assert_near(_box_in_image(page, 0), corrected, tolerance=0.5)

    # Keyboard only: Tab moves through the boxes, Del deletes the focused one, focus stays usable.
    page.locator("#canvas").focus()
    for _ in range(4):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.boxIndex") == "2":
            break
    assert page.evaluate("document.activeElement.dataset.boxIndex") == "2"
    page.keyboard.press("Delete")
    assert page.locator("[data-box-index]").count() == 2
    assert page.evaluate("document.activeElement !== document.body")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.boxIndex") == "0"  # not stuck: the next box

    page.keyboard.press("Escape")
    page.click("#submit")
    # The next task opens by itself.
    expect(page.locator("#file-name")).to_have_text("second-slice.jpg")
    page.wait_for_selector('body[data-ready="true"]')
    assert page.locator("[data-box-index]").count() == 1

    (answer,) = _output(stack, reviews.first)["humanAnswers"]
    result = answer["answerContent"]["annotatedResult"]
    assert result["inputImageProperties"] == {"width": LARGE[0], "height": LARGE[1]}
    assert result["boundingBoxes"] == [
        {"label": LABEL, **dict(zip(("left", "top", "width", "height"), corrected, strict=True))},
        {"label": LABEL, **dict(zip(("left", "top", "width", "height"), MODEL_BOXES[1], strict=True))},
    ]
