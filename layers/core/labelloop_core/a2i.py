"""Amazon A2I bounding-box reviews: the output.json we get back (the InputContent we send is
`labelloop_core.review_input`'s; output.json echoes it as `inputContent`).

The task UI's `crowd-bounding-box` is named `annotatedResult` (`ANSWER_ELEMENT`); its answer is
`{"boundingBoxes": [{label,left,top,width,height}], "inputImageProperties": {height,width}}` in pixels.
Both review backends write this output.json; with several reviewers (`TaskCount` > 1) it has one
`humanAnswers` entry each, and `parse_output` consolidates them (`labelloop_core.consolidation`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from labelloop_core.consolidation import Consolidation, consolidate
from labelloop_core.errors import InvalidEvent, InvalidReview
from labelloop_core.geometry import PixelBox, clamp
from labelloop_core.manifest import ClassMap, build_line, parse_creation_date
from labelloop_core.naming import ImageRef
from labelloop_core.review_answer import ANSWER_ELEMENT, MAX_BOXES
from labelloop_core.review_input import LabeledBox

NO_ANSWER = "NO_ANSWER"
BAD_BOX = "BAD_BOX"
UNKNOWN_LABEL = "UNKNOWN_LABEL"
SCHEMA = "SCHEMA"


@dataclass(frozen=True)
class WorkerAnswer:
    """One reviewer's boxes (clamped to the image)."""

    worker_id: str | None
    submitted_at: datetime
    boxes: list[LabeledBox]
    dropped_boxes: int = 0  # boxes with nothing left inside the image after clamping


@dataclass(frozen=True)
class ReviewAnswer:
    """The review's result: the only answer's boxes, or the consolidation of several reviewers'."""

    image: ImageRef
    width: int
    height: int
    boxes: list[LabeledBox]
    submitted_at: datetime  # the last submission: the newest review wins in the merge
    worker_id: str | None  # the first reviewer's
    depth: int = 3
    dropped_boxes: int = 0  # boxes with nothing left inside the image after clamping
    human_loop_name: str | None = None
    consolidation: Consolidation | None = None  # with several reviewers

    @property
    def source_ref(self) -> str:
        return self.image.s3_uri

    @property
    def reviewers(self) -> int:
        return self.consolidation.reviewers if self.consolidation else 1

    @property
    def confidences(self) -> list[float] | None:
        """Per-object confidence for the manifest's `objects` (None: 1 each, a single reviewer)."""
        return self.consolidation.confidences if self.consolidation else None


def _require(condition: bool, message: str, code: str = SCHEMA) -> None:
    if not condition:
        raise InvalidReview(code, message)


def _object(value: object, message: str, code: str = SCHEMA) -> dict[str, Any]:
    """`value` as a JSON object, or InvalidReview(code, message)."""
    if not isinstance(value, dict):
        raise InvalidReview(code, message)
    return value


def _positive_int(value: object) -> bool:
    return type(value) is int and value > 0


def _input_content(doc: Mapping[str, Any]) -> dict[str, Any]:
    content = doc.get("inputContent")
    if isinstance(content, str):  # tolerate the InputContent string as it was sent
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            raise InvalidReview(SCHEMA, "inputContent is a string but not JSON") from None
    return _object(content, "output.json has no inputContent object")


def _image_from_content(content: Mapping[str, Any]) -> tuple[ImageRef, int, int, int]:
    image = _object(content.get("image"), "inputContent has no image object (bucket, key, width, height)")
    width, height, depth = image.get("width"), image.get("height"), image.get("depth", 3)
    if not (_positive_int(width) and _positive_int(height) and _positive_int(depth)):
        raise InvalidReview(
            SCHEMA, f"inputContent.image needs positive integer sizes, got {width!r}x{height!r}"
        )
    bucket, key = image.get("bucket"), image.get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise InvalidReview(SCHEMA, "inputContent.image needs the bucket and key strings")
    try:
        ref = ImageRef(bucket, key, image.get("versionId"), image.get("etag"))
    except InvalidEvent as exc:
        raise InvalidReview(SCHEMA, f"inputContent.image: {exc}") from None
    return ref, int(width), int(height), int(depth)  # type: ignore[arg-type]


def _answers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    answers = doc.get("humanAnswers")
    if not answers:
        raise InvalidReview(
            NO_ANSWER, "output.json has no human answer (the loop ended without a submission)"
        )
    _require(isinstance(answers, list), "humanAnswers must be a list")
    return [
        _object(answer, f"humanAnswers[{index}] is not an object") for index, answer in enumerate(answers)
    ]


def _check_worker_frame(result: Mapping[str, Any], width: int, height: int) -> None:
    """The worker's coordinates are in the image's natural size: it must be the size we recorded."""
    if result.get("inputImageProperties") is None:
        return
    props = _object(result["inputImageProperties"], "inputImageProperties must be an object")
    seen = (props.get("width"), props.get("height"))
    if seen != (width, height):
        raise InvalidReview(
            BAD_BOX, f"the worker saw a {seen[0]}x{seen[1]} image, but it is {width}x{height}"
        )


def _finite_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _parse_box(raw: object, number: int, known: set[str]) -> LabeledBox:
    box = _object(raw, f"bounding box {number} is not an object", BAD_BOX)
    label = box.get("label")
    if not isinstance(label, str) or not label:
        raise InvalidReview(BAD_BOX, f"bounding box {number} has no label")
    if label not in known:
        raise InvalidReview(
            UNKNOWN_LABEL, f"bounding box {number} has label {label!r}, not one of {sorted(known)}"
        )
    left, top, width, height = (box.get(name) for name in ("left", "top", "width", "height"))
    if not all(_finite_number(n) for n in (left, top, width, height)):
        got = [left, top, width, height]
        raise InvalidReview(
            BAD_BOX, f"bounding box {number} needs numeric left, top, width and height, got {got}"
        )
    return label, PixelBox.from_numbers(left, top, width, height)  # type: ignore[arg-type]


def parse_output(doc: Mapping[str, Any]) -> ReviewAnswer:
    """Validate an A2I output.json and return the review's boxes, clamped to the image; several
    reviewers' answers (one per worker: a repeated worker counts once, with its last answer) are
    consolidated.

    Raises InvalidReview: NO_ANSWER (no submission), SCHEMA (shape), BAD_BOX (unusable box, image
    size mismatch, more than 50 boxes), UNKNOWN_LABEL (a label the task did not offer).
    Boxes with nothing left inside the image are dropped and counted in `dropped_boxes`."""
    _require(isinstance(doc, Mapping), "output.json is not a JSON object")
    content = _input_content(doc)
    image, width, height, depth = _image_from_content(content)
    labels = content.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise InvalidReview(SCHEMA, "inputContent has no list of label names")
    by_worker: dict[object, WorkerAnswer] = {}
    for index, raw in enumerate(_answers(doc)):
        answer = _worker_answer(raw, set(labels), width, height)
        by_worker[answer.worker_id if answer.worker_id is not None else index] = answer
    answers = list(by_worker.values())
    consolidation = consolidate([answer.boxes for answer in answers]) if len(answers) > 1 else None
    boxes = consolidation.boxes if consolidation else answers[0].boxes
    _require(len(boxes) <= MAX_BOXES, f"{len(boxes)} boxes; Rekognition allows at most {MAX_BOXES}", BAD_BOX)
    loop_name = doc.get("humanLoopName")
    return ReviewAnswer(
        image=image,
        width=width,
        height=height,
        boxes=boxes,
        submitted_at=max(answer.submitted_at for answer in answers),
        worker_id=answers[0].worker_id,
        depth=depth,
        dropped_boxes=sum(answer.dropped_boxes for answer in answers),
        human_loop_name=loop_name if isinstance(loop_name, str) else None,
        consolidation=consolidation,
    )


def _worker_answer(answer: Mapping[str, Any], known: set[str], width: int, height: int) -> WorkerAnswer:
    answer_content = _object(answer.get("answerContent"), "the answer has no answerContent object")
    result = _object(answer_content.get(ANSWER_ELEMENT), f"the answer has no '{ANSWER_ELEMENT}' element")
    _check_worker_frame(result, width, height)
    raw_boxes = result.get("boundingBoxes")
    if not isinstance(raw_boxes, list):
        raise InvalidReview(SCHEMA, f"'{ANSWER_ELEMENT}' has no boundingBoxes list")
    boxes: list[LabeledBox] = []
    for number, raw in enumerate(raw_boxes, 1):
        label, box = _parse_box(raw, number, known)
        inside = clamp(box, width, height)
        if inside is not None:
            boxes.append((label, inside))
    _require(len(boxes) <= MAX_BOXES, f"{len(boxes)} boxes; Rekognition allows at most {MAX_BOXES}", BAD_BOX)
    submitted = parse_creation_date(answer.get("submissionTime"))
    if submitted is None:
        raise InvalidReview(
            SCHEMA, f"submissionTime {answer.get('submissionTime')!r} is not an ISO-8601 date"
        )
    worker = answer.get("workerId")
    return WorkerAnswer(
        worker_id=worker if isinstance(worker, str) else None,
        submitted_at=submitted,
        boxes=boxes,
        dropped_boxes=len(raw_boxes) - len(boxes),
    )


def answer_to_manifest_line(
    answer: ReviewAnswer, class_map: ClassMap, attribute: str, loop_name: str
) -> dict[str, Any]:
    """One Ground Truth line for the reviewed image; `creation-date` is the submission time, so the
    newest review wins in the merge. An empty answer ("no objects") gives a line without annotations."""
    unknown = sorted({label for label, _ in answer.boxes if label not in class_map})
    if unknown:
        raise InvalidReview(UNKNOWN_LABEL, f"labels {unknown} are not in the configured labels")
    return build_line(
        answer.source_ref,
        answer.boxes,
        answer.width,
        answer.height,
        class_map,
        attribute,
        job_name=f"labeling-job/{loop_name}",
        creation_date=answer.submitted_at,
        depth=answer.depth,
        confidences=answer.confidences,
    )
