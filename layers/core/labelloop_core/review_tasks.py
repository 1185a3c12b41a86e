"""The built-in review backend's tasks (DESIGN §9): layout, claims, answers and their output.json.

One item per review in the task table (`TASK_TABLE`, key `task_id` = the review name of DESIGN §5,
so opening a review twice finds the same task). This module is the one home of the item's layout
(no boto3 here); `labelloop_core.adapters.review_tasks` encodes it.

| attribute | meaning |
|---|---|
| `task_id`, `status` | the review name; OPEN, COMPLETED or EXPIRED |
| `open`, `rank` | while OPEN: the sparse index `OpenTasks` lists open tasks by `rank` (priority order) |
| `priority`, `created_at`, `expires_at` | lower confidence first; ISO time; epoch seconds of expiry |
| `answers_needed`, `answer_count`, `input` | TaskCount; answers so far; the A2I-shaped input content |
| `holder_<k>`, `until_<k>`, `accepted_<k>` | slot k's claim: the reviewer's `sub`, epoch expiry, ISO time |
| `answer_<k>` | slot k's answer (`result` in A2I's answer shape, `submittedAt`, `issuer`) |

A task has `answers_needed` slots. A reviewer claims a free slot with a conditional write: free means
never claimed, or claimed by a claim that expired without an answer; the same write requires that the
reviewer holds or answered no other slot of the task, so `answers_needed` distinct reviewers answer
it. An abandoned claim simply expires (nothing needs to run for the slot to be free again). A task
past `expires_at` takes no more claims or answers; the sweeper records it as A2I records an expired
loop (status Failed, failure code Expired).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labelloop_core.errors import LabelloopError
from labelloop_core.naming import ImageRef, priority_rank
from labelloop_core.review_answer import ANSWER_ELEMENT, MAX_BOXES

OPEN, COMPLETED, EXPIRED = "OPEN", "COMPLETED", "EXPIRED"
OPEN_INDEX = "OpenTasks"
OPEN_VALUE = "1"
MAX_ANSWER_BYTES = 64 * 1024
MAX_SLOTS = 3  # TaskCount 1-3, as A2I allows
# output.json in A2I's layout (S3OutputPath/<flow>/YYYY/MM/DD/hh/mm/ss/<loop>/output.json), with the
# built-in backend in place of the flow definition's name.
OUTPUT_PREFIX = "reviews/builtin/"
IDENTITY_PROVIDER = "Cognito"
EXPIRED_CODE = "Expired"  # A2I's FailureCode for a loop nobody finished in time


class InvalidAnswer(LabelloopError):
    """An answer the task cannot take; the message says why (the API answers 400 with it)."""


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def iso_time(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Slot:
    index: int
    holder: str | None = None
    until: float | None = None  # epoch seconds
    accepted_at: str | None = None
    answer: Mapping[str, Any] | None = None

    def free(self, now: float) -> bool:
        return self.holder is None or (self.answer is None and (self.until or 0) < now)

    def held_by(self, worker: str, now: float) -> bool:
        return self.holder == worker and self.answer is None and (self.until or 0) >= now


@dataclass(frozen=True)
class Task:
    task_id: str
    status: str
    priority: float
    created_at: str
    expires_at: float
    answers_needed: int
    content: Mapping[str, Any]
    slots: tuple[Slot, ...]
    output_key: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Task:
        needed = int(item.get("answers_needed", 1))
        slots = tuple(
            Slot(
                index,
                _text(item, f"holder_{index}"),
                float(item[f"until_{index}"]) if item.get(f"until_{index}") is not None else None,
                _text(item, f"accepted_{index}"),
                item.get(f"answer_{index}"),
            )
            for index in range(needed)
        )
        return cls(
            task_id=str(item["task_id"]),
            status=str(item.get("status", OPEN)),
            priority=float(item.get("priority", 0)),
            created_at=str(item.get("created_at", "")),
            expires_at=float(item.get("expires_at", 0)),
            answers_needed=needed,
            content=dict(item.get("input") or {}),
            slots=slots,
            output_key=_text(item, "output_key"),
        )

    # -- claims -----------------------------------------------------------------------------------
    @property
    def answered(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.answer is not None]

    @property
    def complete(self) -> bool:
        return len(self.answered) >= self.answers_needed

    @property
    def last_answered_at(self) -> float | None:
        """Epoch seconds of the newest answer's `submittedAt` (None: no answer, or none readable)."""
        times = [_epoch_of((slot.answer or {}).get("submittedAt")) for slot in self.answered]
        known = [moment for moment in times if moment is not None]
        return max(known) if known else None

    def is_open(self, now: float) -> bool:
        return self.status == OPEN and self.expires_at > now and not self.complete

    def held_by(self, worker: str, now: float) -> Slot | None:
        return next((slot for slot in self.slots if slot.held_by(worker, now)), None)

    def answered_by(self, worker: str) -> bool:
        return any(slot.holder == worker and slot.answer is not None for slot in self.slots)

    def claimable_slot(self, worker: str, now: float) -> Slot | None:
        """The slot `worker` may claim now (None: the task is not open, or the worker holds or answered
        one of its slots, or every slot is taken)."""
        if not self.is_open(now) or self.answered_by(worker) or self.held_by(worker, now):
            return None
        return next((slot for slot in self.slots if slot.free(now)), None)

    # -- the image --------------------------------------------------------------------------------
    @property
    def image(self) -> Mapping[str, Any]:
        return dict(self.content.get("image") or {})

    @property
    def image_ref(self) -> ImageRef:
        image = self.image
        return ImageRef(str(image["bucket"]), str(image["key"]), image.get("versionId"), image.get("etag"))

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image["width"]), int(self.image["height"])

    @property
    def labels(self) -> list[str]:
        return [str(label) for label in self.content.get("labels") or []]


def new_item(
    task_id: str,
    content: Mapping[str, Any],
    priority: float,
    answers_needed: int,
    created: datetime,
    lifetime_seconds: int,
) -> dict[str, Any]:
    """The item that opens a task."""
    if not 1 <= answers_needed <= MAX_SLOTS:
        raise ValueError(f"a task takes 1 to {MAX_SLOTS} answers, not {answers_needed}")
    created_at = iso_time(epoch(created))
    return {
        "task_id": task_id,
        "status": OPEN,
        "open": OPEN_VALUE,
        "rank": priority_rank(priority, created_at, task_id),
        "priority": round(float(priority), 3),
        "created_at": created_at,
        "expires_at": int(epoch(created)) + int(lifetime_seconds),
        "answers_needed": answers_needed,
        "answer_count": 0,
        "input": dict(content),
    }


# -- answers ---------------------------------------------------------------------------------------
def parse_answer(body: str | bytes | None, task: Task) -> dict[str, Any]:
    """A reviewer's answer in A2I's shape, checked against the task; InvalidAnswer says what is wrong."""
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    if len(raw) > MAX_ANSWER_BYTES:
        raise InvalidAnswer(f"the body has {len(raw)} bytes; an answer has at most {MAX_ANSWER_BYTES}")
    try:
        document = json.loads(raw or b"null")
    except ValueError as error:
        raise InvalidAnswer(f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidAnswer('the body must be {"boundingBoxes": [...], "inputImageProperties": {...}}')
    width, height = task.size
    properties = document.get("inputImageProperties")
    if not isinstance(properties, dict):
        raise InvalidAnswer("inputImageProperties {width, height} is required")
    seen = (properties.get("width"), properties.get("height"))
    if seen != (width, height):
        raise InvalidAnswer(
            f"the answer is for a {seen[0]}x{seen[1]} image, but the image is {width}x{height}"
        )
    boxes = validate_boxes(document.get("boundingBoxes"), task.labels, width, height)
    return {"boundingBoxes": boxes, "inputImageProperties": {"width": width, "height": height}}


def validate_boxes(raw: Any, labels: Sequence[str], width: int, height: int) -> list[dict[str, Any]]:
    """Boxes in whole image pixels, or InvalidAnswer naming the first bad box and why."""
    if not isinstance(raw, list):
        raise InvalidAnswer("boundingBoxes must be a list of {label, left, top, width, height}")
    if len(raw) > MAX_BOXES:
        raise InvalidAnswer(f"{len(raw)} boxes: at most {MAX_BOXES} boxes per image are allowed")
    boxes = []
    for index, box in enumerate(raw):
        where = f"box {index + 1}"
        if not isinstance(box, dict):
            raise InvalidAnswer(f"{where}: must be an object {{label, left, top, width, height}}")
        label = box.get("label")
        if label not in labels:
            raise InvalidAnswer(f"{where}: label {label!r} is not one of the task's labels {list(labels)}")
        numbers = {}
        for field in ("left", "top", "width", "height"):
            value = box.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidAnswer(f"{where}: {field} must be a number, got {value!r}")
            numbers[field] = round(value)
        if numbers["left"] < 0 or numbers["top"] < 0:
            raise InvalidAnswer(f"{where}: left and top must not be negative, got {numbers}")
        if numbers["width"] < 1 or numbers["height"] < 1:
            raise InvalidAnswer(f"{where}: width and height must be at least 1 pixel, got {numbers}")
        if numbers["left"] + numbers["width"] > width or numbers["top"] + numbers["height"] > height:
            raise InvalidAnswer(f"{where}: {numbers} reaches outside the {width}x{height} image")
        boxes.append({"label": label, **numbers})
    return boxes


def stored_answer(result: Mapping[str, Any], submitted: datetime, issuer: str) -> dict[str, Any]:
    """What a slot keeps of an answer: the result in A2I's shape, when, and who issued the identity."""
    return {"result": dict(result), "submittedAt": iso_time(epoch(submitted)), "issuer": issuer}


# -- the API's view of a task ----------------------------------------------------------------------
def task_view(task: Task, slot: Slot, image_url: str) -> dict[str, Any]:
    """The task as `GET /api/tasks/...` returns it to the reviewer holding `slot`."""
    image = task.image
    key = str(image.get("key", ""))
    return {
        "taskId": task.task_id,
        "imageUrl": image_url,
        "initialValue": list(task.content.get("initialValue") or []),
        "labels": task.labels,
        "reasons": list(task.content.get("reviewReasons") or []),
        "claimExpiresAt": iso_time(slot.until or 0),
        "answersNeeded": task.answers_needed,
        "image": {
            "fileName": key.rsplit("/", 1)[-1],
            "key": key,
            "width": image.get("width"),
            "height": image.get("height"),
        },
    }


# -- output.json -----------------------------------------------------------------------------------
def output_key(task: Task) -> str:
    """Where the task's output.json goes: A2I's layout, the date segments being the creation time."""
    created = datetime.fromisoformat(task.created_at.replace("Z", "+00:00"))
    return f"{OUTPUT_PREFIX}{created.strftime('%Y/%m/%d/%H/%M/%S')}/{task.task_id}/output.json"


def output_document(task: Task) -> dict[str, Any]:
    """output.json in A2I's format: one `humanAnswers` entry per reviewer, `workerId` = Cognito `sub`."""
    answers = []
    for slot in sorted(task.answered, key=lambda s: str((s.answer or {}).get("submittedAt", ""))):
        answer = dict(slot.answer or {})
        accepted = slot.accepted_at or answer.get("submittedAt")
        answers.append(
            {
                "answerContent": {ANSWER_ELEMENT: answer.get("result")},
                "acceptanceTime": accepted,
                "submissionTime": answer.get("submittedAt"),
                "timeSpentInSeconds": _seconds_between(accepted, answer.get("submittedAt")),
                "workerId": slot.holder,
                "workerMetadata": {
                    "identityData": {
                        "identityProviderType": IDENTITY_PROVIDER,
                        "issuer": answer.get("issuer"),
                        "sub": slot.holder,
                    }
                },
            }
        )
    return {"humanLoopName": task.task_id, "inputContent": dict(task.content), "humanAnswers": answers}


def _epoch_of(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _seconds_between(start: Any, end: Any) -> float:
    first, last = _epoch_of(start), _epoch_of(end)
    if first is None or last is None:
        return 0.0
    return max(0.0, round(last - first, 3))


def _text(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else str(value)
