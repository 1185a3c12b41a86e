"""Many reviewers at once on the local stack's built-in backend (issue 8): each reviewer is a Cognito
user of its own with its own token, each request a thread of its own through the local HTTP API, the
JWT check and the review API function, to the task table on moto's DynamoDB (server mode).

- Concurrent claims of one task: exactly `TaskCount` distinct reviewers hold a slot, never two the
  same slot; everyone else gets 204.
- Concurrent answers of many tasks: every task completes once (one `ReviewCompleted`), and labels/
  holds exactly one label line per image: none lost, none duplicated.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from labelloop_local.stack.local_stack import LocalStack
from tests.support.flows import png_bytes
from tests.support.paths import TEMPLATE_PATH
from tests.support.reviewers import BusSpy, api, request_review, sign_in, token_subject

pytestmark = pytest.mark.integration

LABEL = "pepperoni pizza slice"
SIZE = (400, 300)
BOX = (10, 10, 90, 60)
NEXT = "/api/tasks/next"
T = TypeVar("T")
UNTHROTTLED = {"ApiThrottlingRateLimit": 10000, "ApiThrottlingBurstLimit": 5000}


def _stack(work: Path, task_count: int) -> LocalStack:
    return LocalStack(
        TEMPLATE_PATH,
        data_dir=work,
        # Throttling (default 20 requests/s, burst 40) is not what these tests are about: a fast
        # machine must not turn their bursts into 429s.
        params={"TaskCount": task_count, **UNTHROTTLED},
        time_scale=1 / 6000,
        schedules={},
    )


def _reviewers(stack: LocalStack, count: int, prefix: str) -> list[str]:
    """`count` new reviewers signed in: their access tokens."""
    return [sign_in(stack, f"{prefix}{index}@example.com")["AccessToken"] for index in range(count)]


def _at_once(tokens: list[str], work: Callable[[str], T]) -> list[T]:
    """`work(token)` on one thread per token, all released together."""
    start = threading.Barrier(len(tokens))

    def run(token: str) -> T:
        start.wait()
        return work(token)

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        return list(pool.map(run, tokens))


def _answer(task: dict[str, Any]) -> dict[str, Any]:
    left, top, width, height = BOX
    box = {"label": task["labels"][0], "left": left, "top": top, "width": width, "height": height}
    return {"boundingBoxes": [box], "inputImageProperties": {"width": SIZE[0], "height": SIZE[1]}}


def _answering(stack: LocalStack, task_id: str) -> Callable[[str], tuple[int, Any]]:
    """What a reviewer holding a claim on `task_id` does: answer it (the model's box, unchanged)."""

    def answer(token: str) -> tuple[int, Any]:
        return api(stack, "POST", f"/api/tasks/{task_id}/answer", token, _answer({"labels": [LABEL]}))

    return answer


def _holders(stack: LocalStack, task_id: str, slots: int) -> list[str | None]:
    (item,) = [task for task in stack.review_tasks() if task["task_id"] == task_id]
    return [item.get(f"holder_{slot}") for slot in range(slots)]


# One stack per test, each stopped before the next starts: moto's backends are process-global, and a
# running stack's dispatcher would serve the next stack's resources (same names) with its own settings.
@pytest.fixture
def three_reviewers_per_task(tmp_path: Path) -> Iterator[LocalStack]:
    with _stack(tmp_path / "claims", task_count=3) as stack:
        assert stack.review_backend == "builtin"
        yield stack


@pytest.fixture
def two_reviewers_per_task(tmp_path: Path) -> Iterator[LocalStack]:
    with _stack(tmp_path / "answers", task_count=2) as stack:
        yield stack


def test_reviewers_racing_for_one_task_get_its_three_slots_once_each_and_the_rest_nothing(
    three_reviewers_per_task: LocalStack,
) -> None:
    stack = three_reviewers_per_task
    tokens = _reviewers(stack, 8, "racer")
    subjects = {token: token_subject(token) for token in tokens}
    for round_number in range(3):  # a new task each round; the previous one is answered and complete
        task_id = request_review(
            stack, f"uploads/race-{round_number}.png", png_bytes(*SIZE), SIZE, [(LABEL, 20.0, BOX)]
        )
        outcomes = _at_once(tokens, lambda token: api(stack, "GET", NEXT, token))

        winners = [token for token, (status, _) in zip(tokens, outcomes, strict=True) if status == 200]
        assert sorted(status for status, _ in outcomes) == [200] * 3 + [204] * 5
        assert {body["taskId"] for status, body in outcomes if status == 200} == {task_id}
        holders = _holders(stack, task_id, 3)
        assert sorted(map(str, holders)) == sorted(subjects[token] for token in winners)  # one each

        # The losers ask again: still nothing; a winner asking again keeps its own claim.
        assert {api(stack, "GET", NEXT, token)[0] for token in tokens if token not in winners} == {204}
        assert api(stack, "GET", NEXT, winners[0])[1]["taskId"] == task_id
        assert _holders(stack, task_id, 3) == holders

        answered = _at_once(winners, _answering(stack, task_id))
        assert [status for status, _ in answered] == [200] * 3
        assert sum(body["completed"] for _, body in answered) == 1  # the last answer completes it
    assert {task["status"] for task in stack.review_tasks()} == {"COMPLETED"}


def test_reviewers_answering_twenty_tasks_at_once_complete_each_once_with_one_label_line_per_image(
    two_reviewers_per_task: LocalStack,
) -> None:
    stack = two_reviewers_per_task
    assert stack.stack is not None
    spy = BusSpy(stack)
    images = {
        request_review(
            stack, f"uploads/batch/img-{index:02d}.png", png_bytes(*SIZE), SIZE, [(LABEL, 30.0, BOX)]
        ): f"s3://{stack.stack.bucket}/uploads/batch/img-{index:02d}.png"
        for index in range(20)
    }
    tokens = _reviewers(stack, 5, "answerer")

    def review_until_none_left(token: str) -> list[str]:
        answered: list[str] = []
        while True:
            status, task = api(stack, "GET", NEXT, token)
            if status == 204:
                return answered
            assert status == 200, task
            status, body = api(stack, "POST", f"/api/tasks/{task['taskId']}/answer", token, _answer(task))
            assert status == 200, body
            answered.append(task["taskId"])

    answered_by = _at_once(tokens, review_until_none_left)
    assert stack.drain(timeout=120)

    answers = Counter(task_id for answered in answered_by for task_id in answered)
    assert answers == {task_id: 2 for task_id in images}  # two distinct reviewers each
    assert all(len(set(answered)) == len(answered) for answered in answered_by)
    assert {task["task_id"]: task["status"] for task in stack.review_tasks()} == dict.fromkeys(
        images, "COMPLETED"
    )
    completed = Counter(event["detail"]["reviewName"] for event in spy.events("ReviewCompleted"))
    assert completed == dict.fromkeys(images, 1)  # each task completed once

    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=stack.stack.bucket, Prefix="labels/").get("Contents", [])
    lines = [
        s3.get_object(Bucket=stack.stack.bucket, Key=item["Key"])["Body"].read().decode() for item in listed
    ]
    sources = Counter(json.loads(line)["source-ref"] for line in lines)
    assert sources == dict.fromkeys(images.values(), 1)  # one label line per image, none lost
    appended = Counter(event["detail"]["loopName"] for event in spy.events("LabelsAppended"))
    assert appended == dict.fromkeys(images, 1)
