"""The review portal in a real headless Chromium: correct pre-drawn boxes, submit, read A2I's output.json."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from labelloop_local.emulators.testing import LocalAws, create_active_flow, local_aws, wait_for

pytestmark = pytest.mark.browser

BUCKET = "portal-test-bucket"
LABELS = ["pepperoni pizza slice", "crust"]
IMAGE_SIZE = (1600, 1200)  # larger than the page shows it: the portal must convert to original pixels
# The README's screenshot is refreshed only on request (LABELLOOP_SCREENSHOT=docs/portal.png): a test
# run leaves the working tree as it found it.
SCREENSHOT_ENV = "LABELLOOP_SCREENSHOT"
TEMPLATE = (
    '<crowd-form><crowd-bounding-box name="annotatedResult"'
    ' src="{{ task.input.taskObject | grant_read_access }}"'
    ' labels="{{ task.input.labels | to_json | escape }}"'
    ' initial-value="{{ task.input.initialValue | to_json }}">'
    "</crowd-bounding-box></crowd-form>"
)


def _pizza_scene() -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """A synthetic pizza-slice photo (never the seed photos) and the pixel boxes of its slices."""
    width, height = IMAGE_SIZE
    image = Image.new("RGB", IMAGE_SIZE, (150, 100, 60))
    draw = ImageDraw.Draw(image)
    for y in range(0, height, 38):  # wood grain
        draw.line([(0, y), (width, y + 25)], fill=(128, 84, 48), width=9)
    boxes = []
    for apex, radius, start in (((420, 300), 360, 30), ((1050, 520), 420, 200), ((250, 1120), 330, 290)):
        end = start + 50
        draw.pieslice(
            [apex[0] - radius, apex[1] - radius, apex[0] + radius, apex[1] + radius],
            start,
            end,
            fill=(244, 200, 90),
        )
        draw.arc(
            [apex[0] - radius, apex[1] - radius, apex[0] + radius, apex[1] + radius],
            start,
            end,
            fill=(170, 100, 40),
            width=34,
        )
        for fraction, spread in ((0.45, 0.35), (0.7, 0.6), (0.72, 0.25), (0.55, 0.75)):
            angle = math.radians(start + 50 * spread)
            cx, cy = (
                apex[0] + radius * fraction * math.cos(angle),
                apex[1] + radius * fraction * math.sin(angle),
            )
            draw.ellipse([cx - 26, cy - 26, cx + 26, cy + 26], fill=(178, 34, 34))
        points = [apex] + [
            (apex[0] + radius * math.cos(math.radians(a)), apex[1] + radius * math.sin(math.radians(a)))
            for a in range(start, end + 1, 5)
        ]
        left, top = min(p[0] for p in points), min(p[1] for p in points)
        right, bottom = max(p[0] for p in points), max(p[1] for p in points)
        boxes.append((int(left), int(top), int(right - left), int(bottom - top)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue(), boxes


@pytest.fixture
def portal_task(tmp_path: Path) -> Iterator[tuple[LocalAws, str, list[dict[str, Any]]]]:
    """A running local A2I with one open task whose image has two pre-drawn model boxes."""
    from labelloop_core.geometry import PixelBox
    from labelloop_core.naming import ImageRef
    from labelloop_core.policy import ReviewReason
    from labelloop_core.review_input import build_input_content

    with local_aws(tmp_path / "state") as aws:
        s3, sagemaker = aws.client("s3"), aws.client("sagemaker")
        s3.create_bucket(Bucket=BUCKET)
        data, slices = _pizza_scene()
        s3.put_object(Bucket=BUCKET, Key="incoming/slices.jpg", Body=data, ContentType="image/jpeg")
        flow_arn = create_active_flow(
            sagemaker, "portal-flow", "portal-ui", f"s3://{BUCKET}/reviews/", TEMPLATE
        )
        # The model placed the first slice's box a bit off, mislabeled the second and missed the third.
        model_boxes = [
            (LABELS[0], PixelBox(slices[0][0] + 40, slices[0][1] + 30, slices[0][2], slices[0][3] - 60)),
            (LABELS[1], PixelBox(*slices[1])),
        ]
        content = build_input_content(
            ImageRef(BUCKET, "incoming/slices.jpg", etag="e1"),
            *IMAGE_SIZE,
            model_boxes,
            LABELS,
            [ReviewReason("LOW_CONFIDENCE", LABELS[0], 38.5, 60.0)],
        )
        aws.client("sagemaker-a2i-runtime").start_human_loop(
            HumanLoopName="ll-portal-test",
            FlowDefinitionArn=flow_arn,
            HumanLoopInput={"InputContent": json.dumps(content)},
        )
        yield aws, "ll-portal-test", content["initialValue"]


def _box_rect(page: Any, index: int) -> dict[str, float]:
    return dict(page.locator(f'[data-box-index="{index}"]').bounding_box())


def _drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=5)
    page.mouse.move(*end, steps=5)
    page.mouse.up()


def _output(aws: LocalAws, loop_name: str) -> dict[str, Any]:
    uri = aws.client("sagemaker-a2i-runtime").describe_human_loop(HumanLoopName=loop_name)["HumanLoopOutput"][
        "OutputS3Uri"
    ]
    key = uri.removeprefix(f"s3://{BUCKET}/")
    return dict(json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def test_reviewer_moves_a_predrawn_box_adds_one_and_submits(
    page: Any, portal_task: tuple[LocalAws, str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    aws, loop_name, initial = portal_task
    page.goto(f"{aws.services.base_url}/portal/")
    page.click(f'a[href="/portal/task.html?loop={loop_name}"] >> nth=1')
    page.wait_for_selector('body[data-ready="true"]')
    assert page.locator("[data-box-index]").count() == 2

    scale = page.evaluate("document.getElementById('image').clientWidth") / IMAGE_SIZE[0]
    assert scale < 1  # the page shows the photo smaller than it is
    image = dict(page.locator("#image").bounding_box())

    # Move the first pre-drawn box onto its slice by dragging its middle (the model was 40, 30 px off).
    rect = _box_rect(page, 0)
    start = (rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2)
    dx, dy = -round(40 * scale), -round(30 * scale)
    _drag(page, start, (start[0] + dx, start[1] + dy))
    # ...and stretch it over the slice's tip with its bottom-right corner handle (60 px short).
    handle = dict(page.locator('[data-box-index="0"] [data-handle="se"]').bounding_box())
    grip = (handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    grow = round(60 * scale)
    _drag(page, grip, (grip[0], grip[1] + grow))
    moved = {
        "left": initial[0]["left"] + dx / scale,
        "top": initial[0]["top"] + dy / scale,
        "width": initial[0]["width"],
        "height": initial[0]["height"] + grow / scale,
    }

    # Draw a box around the slice the model missed, by dragging on the image where no box is.
    _, slices = _pizza_scene()
    missed = slices[2]
    corner = (round(image["x"] + missed[0] * scale), round(image["y"] + missed[1] * scale))
    size = (round(missed[2] * scale), round(missed[3] * scale))
    _drag(page, corner, (corner[0] + size[0], corner[1] + size[1]))
    assert page.locator("[data-box-index]").count() == 3
    added = {
        "left": (corner[0] - image["x"]) / scale,
        "top": (corner[1] - image["y"]) / scale,
        "width": size[0] / scale,
        "height": size[1] / scale,
    }
    page.select_option("#label-select", LABELS[0])

    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "portal.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one

    page.click("#submit")
    page.wait_for_selector('body[data-submitted="true"]')
    assert "Submitted" in page.locator("#status").inner_text()

    output = _output(aws, loop_name)
    answer = output["humanAnswers"][0]["answerContent"]["annotatedResult"]
    assert answer["inputImageProperties"] == {"width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1]}
    boxes = answer["boundingBoxes"]
    assert len(boxes) == 3
    tolerance = 1.5  # whole-pixel rounding of the submitted boxes
    for expected, label, got in ((moved, LABELS[0], boxes[0]), (added, LABELS[0], boxes[2])):
        assert got["label"] == label
        for field in ("left", "top", "width", "height"):
            assert abs(got[field] - expected[field]) <= tolerance, (field, got, expected)
    assert boxes[1] == initial[1]  # untouched boxes come back exactly as the model drew them
    assert all(isinstance(got[field], int) for got in boxes for field in ("left", "top", "width", "height"))


def test_keyboard_shortcuts_edit_and_submit(
    page: Any, portal_task: tuple[LocalAws, str, list[dict[str, Any]]]
) -> None:
    aws, loop_name, initial = portal_task
    page.goto(f"{aws.services.base_url}/portal/task/{loop_name}")
    page.wait_for_selector('body[data-ready="true"]')
    assert page.locator("#shortcuts").is_visible()

    page.locator('[data-box-index="1"]').focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("1")  # relabel the selected box as the first label
    page.locator('[data-box-index="0"]').focus()
    page.keyboard.press("Delete")
    page.keyboard.press("Escape")
    assert page.locator("[data-box-index]").count() == 1
    page.keyboard.press("Enter")
    page.wait_for_selector('body[data-submitted="true"]')

    (box,) = _output(aws, loop_name)["humanAnswers"][0]["answerContent"]["annotatedResult"]["boundingBoxes"]
    expected_left = min(initial[1]["left"] + 3, IMAGE_SIZE[0] - initial[1]["width"])
    expected_top = min(initial[1]["top"] + 10, IMAGE_SIZE[1] - initial[1]["height"])
    assert box == {**initial[1], "label": LABELS[0], "left": expected_left, "top": expected_top}


def test_server_rejection_is_shown_to_the_reviewer(
    page: Any, portal_task: tuple[LocalAws, str, list[dict[str, Any]]]
) -> None:
    aws, loop_name, _ = portal_task
    aws.client("sagemaker-a2i-runtime").stop_human_loop(HumanLoopName=loop_name)
    page.goto(f"{aws.services.base_url}/portal/task/{loop_name}")
    page.wait_for_selector('body[data-ready="true"]')
    wait_for(
        lambda: "takes no answers" in page.locator("#status").inner_text(), timeout=10, what="locked page"
    )
    assert page.locator("#submit").is_disabled()
