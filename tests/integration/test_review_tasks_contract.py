"""The review-task and review-budget contracts: the in-memory fakes of the service tests and the
DynamoDB adapters on moto give the same answers for the same scenarios, including the conditional
writes that keep two reviewers off one slot and the budget from being overspent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from labelloop_core import ledger, review_tasks
from labelloop_core.adapters.ledger import ReviewQueue
from labelloop_core.adapters.review_tasks import TaskTable
from labelloop_core.ledger import Admission
from labelloop_local.stack.provision import Stack
from tests.support.fakes import FakeReviewQueue, FakeTaskStore

pytestmark = pytest.mark.integration

CREATED = datetime(2024, 5, 1, 10, tzinfo=UTC)
NOW = review_tasks.epoch(CREATED) + 60
CONTENT = {
    "taskObject": "s3://images/incoming/a.jpg",
    "initialValue": [],
    "labels": ["pizza"],
    "image": {"bucket": "images", "key": "incoming/a.jpg", "versionId": "v1", "width": 100, "height": 80},
    "reviewReasons": [],
}
ANSWER = {"result": {"boundingBoxes": []}, "submittedAt": "2024-05-01T10:02:00.000Z", "issuer": "iss"}


@pytest.fixture(params=["fake", "dynamodb"])
def tasks(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeTaskStore()
    else:
        stack: Stack = request.getfixturevalue("aws_stack")
        yield TaskTable(str(stack.physical["ReviewTaskTable"]))


@pytest.fixture(params=["fake", "dynamodb"])
def queue(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeReviewQueue()
    else:
        stack: Stack = request.getfixturevalue("aws_stack")
        yield ReviewQueue(stack.table)


def open_task(tasks: Any, name: str = "ll-a", priority: float = 40.0, needed: int = 2) -> review_tasks.Task:
    assert tasks.create(review_tasks.new_item(name, CONTENT, priority, needed, CREATED, 3600))
    return tasks.get(name)


def test_a_task_opens_once_and_lists_in_priority_order(tasks: Any) -> None:
    open_task(tasks, "ll-b", priority=55.0)
    open_task(tasks, "ll-a", priority=12.5)
    assert not tasks.create(review_tasks.new_item("ll-a", CONTENT, 1.0, 1, CREATED, 3600))
    assert [task.task_id for task in tasks.open_tasks()] == ["ll-a", "ll-b"]
    assert tasks.get("ll-a").priority == 12.5 and tasks.get("ll-missing") is None


def test_a_slot_is_held_by_one_reviewer_and_a_reviewer_holds_one_slot(tasks: Any) -> None:
    task = open_task(tasks)
    claimed = tasks.claim(task, 0, "alice", NOW, NOW + 600)
    assert claimed is not None and claimed.held_by("alice", NOW).index == 0  # as the claim left it
    assert not tasks.claim(task, 0, "bob", NOW, NOW + 600)  # taken
    assert not tasks.claim(task, 1, "alice", NOW, NOW + 600)  # alice already holds slot 0
    assert tasks.claim(task, 1, "bob", NOW, NOW + 600)
    held = tasks.get(task.task_id)
    assert held.held_by("alice", NOW).index == 0 and held.held_by("bob", NOW).index == 1


def test_an_expired_claim_frees_the_slot_but_an_answer_keeps_it(tasks: Any) -> None:
    task = open_task(tasks)
    assert tasks.claim(task, 0, "alice", NOW, NOW + 10)
    assert tasks.claim(task, 0, "bob", NOW + 11, NOW + 600)  # alice's claim ran out
    assert not tasks.answer(task.task_id, 0, "alice", ANSWER, NOW + 12)
    assert tasks.answer(task.task_id, 0, "bob", ANSWER, NOW + 12)
    assert not tasks.claim(task, 0, "carol", NOW + 700, NOW + 900)  # answered: never free again
    assert not tasks.claim(task, 1, "bob", NOW + 13, NOW + 900)  # bob answered: not a second slot
    assert tasks.get(task.task_id).answered_by("bob")


def test_answers_need_the_live_claim_and_stop_at_the_number_needed(tasks: Any) -> None:
    task = open_task(tasks, needed=1)
    assert not tasks.answer(task.task_id, 0, "alice", ANSWER, NOW)  # no claim
    assert tasks.claim(task, 0, "alice", NOW, NOW + 600)
    assert tasks.answer(task.task_id, 0, "alice", ANSWER, NOW + 1)
    assert not tasks.answer(task.task_id, 0, "alice", ANSWER, NOW + 2)  # answered already
    assert tasks.get(task.task_id).complete


def test_only_the_answer_that_fills_the_last_slot_sees_the_task_complete(tasks: Any) -> None:
    """What the API completes a task on: the task as the answer's own write left it, so reviewers
    answering at once never both complete it."""
    task = open_task(tasks, needed=2)
    assert tasks.claim(task, 0, "alice", NOW, NOW + 600) and tasks.claim(task, 1, "bob", NOW, NOW + 600)
    first = tasks.answer(task.task_id, 0, "alice", ANSWER, NOW + 1)
    assert first is not None and not first.complete and len(first.answered) == 1
    second = tasks.answer(task.task_id, 1, "bob", ANSWER, NOW + 2)
    assert (
        second is not None
        and second.complete
        and [slot.holder for slot in second.answered]
        == [
            "alice",
            "bob",
        ]
    )
    assert tasks.answer(task.task_id, 1, "bob", ANSWER, NOW + 3) is None


def test_a_release_frees_only_the_holders_live_claim(tasks: Any) -> None:
    task = open_task(tasks)
    assert tasks.claim(task, 0, "alice", NOW, NOW + 600)
    assert not tasks.release(task.task_id, 0, "bob", NOW)
    assert tasks.release(task.task_id, 0, "alice", NOW)
    assert tasks.claim(task, 0, "bob", NOW, NOW + 600)


def test_an_expired_or_finished_task_takes_no_claim_and_leaves_the_index(tasks: Any) -> None:
    task = open_task(tasks)
    assert not tasks.claim(task, 0, "alice", task.expires_at, task.expires_at + 600)
    assert tasks.finish(task.task_id, review_tasks.EXPIRED, None)
    assert not tasks.finish(task.task_id, review_tasks.COMPLETED, "reviews/builtin/x/output.json")
    assert not tasks.claim(task, 0, "alice", NOW, NOW + 600)
    assert list(tasks.open_tasks()) == []
    assert tasks.get(task.task_id).status == review_tasks.EXPIRED


def test_reviews_wait_in_priority_order_and_are_kept_once(queue: Any) -> None:
    assert queue.enqueue("ll-b", {"key": "b"}, 70.0, CREATED)
    assert queue.enqueue("ll-a", {"key": "a"}, 20.0, CREATED)
    assert not queue.enqueue("ll-a", {"key": "again"}, 1.0, CREATED)
    waiting = queue.waiting(ledger.WAITING, 10)
    assert [(item.name, item.detail, item.priority) for item in waiting] == [
        ("ll-a", {"key": "a"}, 20.0),
        ("ll-b", {"key": "b"}, 70.0),
    ]


def test_the_budget_admits_each_review_once_and_no_more_than_the_day_allows(queue: Any) -> None:
    for name in ("ll-a", "ll-b", "ll-c"):
        queue.enqueue(name, {}, 10.0, CREATED)
    assert queue.admit("ll-a", "2024-05-01", 2) is Admission.ADMITTED
    assert queue.admit("ll-a", "2024-05-01", 2) is Admission.TAKEN
    assert queue.admit("ll-b", "2024-05-01", 2) is Admission.ADMITTED
    assert queue.admit("ll-c", "2024-05-01", 2) is Admission.BUDGET_SPENT
    assert queue.opened_on("2024-05-01") == 2
    assert queue.admit("ll-c", "2024-05-02", 2) is Admission.ADMITTED  # a new day
    assert [item.name for item in queue.waiting(ledger.ADMITTED, 10)] == ["ll-a", "ll-b", "ll-c"]
    queue.opened("ll-a")
    assert [item.name for item in queue.waiting(ledger.ADMITTED, 10)] == ["ll-b", "ll-c"]
    assert queue.waiting(ledger.WAITING, 10) == []


def test_no_budget_admits_everything_and_still_counts(queue: Any) -> None:
    for index in range(3):
        queue.enqueue(f"ll-{index}", {}, 10.0, CREATED)
        assert queue.admit(f"ll-{index}", "2024-05-01", 0) is Admission.ADMITTED
    assert queue.opened_on("2024-05-01") == 3
