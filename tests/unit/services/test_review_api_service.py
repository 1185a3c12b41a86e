"""The built-in backend's review API and sweeper on in-memory ports: claims in priority order, distinct
reviewers per task, answers checked, completion in A2I's output.json format, expiry recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labelloop_core import review_tasks
from labelloop_core.a2i import parse_output
from labelloop_core.config import settings_from_env
from labelloop_core.geometry import PixelBox
from labelloop_core.inbound.http_api import HttpRequest
from labelloop_core.naming import ImageRef
from labelloop_core.policy import ReviewReason
from labelloop_core.review_input import build_input_content
from labelloop_core.schemas import validate
from labelloop_core.services.review_api import ReviewApiService, ReviewApiSettings
from labelloop_core.services.review_sweeper import (
    COMPLETION_GRACE_SECONDS,
    ReviewSweeperService,
    ReviewSweeperSettings,
)
from labelloop_core.services.task_completion import TaskCompletion
from tests.support.fakes import FakeImageLinks, FakePublisher, FakeStore, FakeTaskStore

ENV = {
    "BUCKET_NAME": "images",
    "TASK_TABLE": "tasks",
    "EVENT_BUS_NAME": "bus",
    "TASK_TIME_LIMIT_SECONDS": "600",
}
START = datetime(2024, 5, 1, 10, tzinfo=UTC)
LABELS = ["pizza", "crust"]
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class World:
    def __init__(self) -> None:
        self.clock = Clock()
        self.tasks = FakeTaskStore()
        self.store = FakeStore("images")
        self.publisher = FakePublisher()
        self.links = FakeImageLinks()
        completion = TaskCompletion(self.store, self.publisher, self.tasks)
        settings = settings_from_env(ReviewApiSettings, ENV)
        self.api = ReviewApiService(settings, self.tasks, self.links, completion, self.clock)
        sweeper_settings = settings_from_env(ReviewSweeperSettings, ENV)
        self.sweeper = ReviewSweeperService(sweeper_settings, self.tasks, completion, self.clock)

    def open(self, name: str, priority: float, needed: int = 1, key: str = "incoming/a.jpg") -> None:
        image = ImageRef("images", key, "v7", "etag")
        content = build_input_content(
            image,
            400,
            300,
            [("pizza", PixelBox(10, 20, 100, 50))],
            LABELS,
            [ReviewReason("LOW_CONFIDENCE", "pizza", priority, 60.0)],
        )
        item = review_tasks.new_item(name, content, priority, needed, self.clock(), 3600)
        assert self.tasks.create(item)

    def call(self, route: str, worker: str | None, task_id: str = "", body: Any = None) -> Any:
        method, _, path = route.partition(" ")
        raw = body if isinstance(body, bytes) else (None if body is None else json.dumps(body).encode())
        request = HttpRequest(
            route_key=route,
            method=method,
            path=path.replace("{taskId}", task_id),
            path_parameters={"taskId": task_id} if task_id else {},
            query={},
            headers={},
            body=raw,
            claims={"sub": worker, "iss": ISSUER} if worker else {},
            request_id="req-1",
        )
        return self.api.handle(request)

    def next(self, worker: str) -> Any:
        return self.call("GET /api/tasks/next", worker)

    def task(self, task_id: str) -> review_tasks.Task:
        task = self.tasks.get(task_id)
        assert task is not None, task_id
        return task

    def answer(self, worker: str, task_id: str, body: Any) -> Any:
        return self.call("POST /api/tasks/{taskId}/answer", worker, task_id, body)


def answer(*boxes: dict[str, Any], size: tuple[int, int] = (400, 300)) -> dict[str, Any]:
    return {"boundingBoxes": list(boxes), "inputImageProperties": {"width": size[0], "height": size[1]}}


BOX = {"label": "pizza", "left": 12, "top": 22, "width": 100, "height": 50}


@pytest.fixture
def world() -> World:
    return World()


def test_next_claims_the_lowest_confidence_task_and_links_the_detected_version(world: World) -> None:
    world.open("ll-b", 55.0)
    world.open("ll-a", 18.0, key="incoming/dir/IMG_0042.jpg")
    response = world.next("alice")
    assert response.status == 200
    task = response.document
    validate("review-task", task)
    assert task["taskId"] == "ll-a" and task["answersNeeded"] == 1
    assert task["image"] == {
        "fileName": "IMG_0042.jpg",
        "key": "incoming/dir/IMG_0042.jpg",
        "width": 400,
        "height": 300,
    }
    assert task["initialValue"] == [{"label": "pizza", "left": 10, "top": 20, "width": 100, "height": 50}]
    assert task["claimExpiresAt"] == "2024-05-01T10:10:00.000Z"
    ((image, expires_in),) = world.links.links
    assert (image.key, image.version_id, expires_in) == ("incoming/dir/IMG_0042.jpg", "v7", 600)
    assert world.next("alice").document["taskId"] == "ll-a"  # the caller's claim, again
    assert world.next("bob").document["taskId"] == "ll-b"
    assert world.next("carol").status == 204


def test_a_task_is_shown_only_to_the_reviewer_holding_it(world: World) -> None:
    world.open("ll-a", 10.0)
    world.next("alice")
    assert world.call("GET /api/tasks/{taskId}", "alice", "ll-a").status == 200
    assert world.call("GET /api/tasks/{taskId}", "bob", "ll-a").status == 403
    assert world.call("GET /api/tasks/{taskId}", "alice", "ll-nope").status == 404


def test_a_request_without_a_caller_is_unauthorized_and_an_unknown_route_not_found(world: World) -> None:
    assert world.next("").status == 401  # API Gateway refuses it first; the function too
    assert world.call("GET /api/nothing", "alice").status == 404


def test_an_answer_completes_the_task_with_output_json_and_review_completed(world: World) -> None:
    world.open("ll-a", 10.0)
    world.next("alice")
    world.clock.advance(42)
    response = world.answer("alice", "ll-a", answer(BOX))
    assert (response.status, response.document["completed"]) == (200, True)
    (key,) = world.store.keys("reviews/builtin/")
    assert key == "reviews/builtin/2024/05/01/10/00/00/ll-a/output.json"
    output = world.store.document(key)
    validate("a2i-output", output)
    (human,) = output["humanAnswers"]
    assert human["workerId"] == "alice" and human["workerMetadata"]["identityData"]["sub"] == "alice"
    assert human["workerMetadata"]["identityData"]["issuer"] == ISSUER
    assert human["timeSpentInSeconds"] == 42.0
    assert parse_output(output).boxes == [("pizza", PixelBox(12, 22, 100, 50))]
    (completed,) = world.publisher.of_type("ReviewCompleted")
    assert completed["status"] == "Completed" and completed["outputS3Uri"] == f"s3://images/{key}"
    assert world.task("ll-a").status == review_tasks.COMPLETED
    assert list(world.tasks.open_tasks()) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (answer({**BOX, "label": "anchovy"}), "label 'anchovy' is not one of"),
        (answer({**BOX, "left": 350}), "reaches outside the 400x300 image"),
        (answer({**BOX, "left": -1}), "must not be negative"),
        (answer({**BOX, "width": 0}), "at least 1 pixel"),
        (answer(*[BOX] * 51), "at most 50 boxes"),
        (answer(BOX, size=(800, 600)), "is for a 800x600 image"),
        ({"boundingBoxes": [BOX]}, "inputImageProperties"),
        (b"{not json", "not JSON"),
        (json.dumps(answer(BOX)).encode() + b" " * 65536, "at most 65536"),
    ],
    ids=[
        "unknown-label",
        "outside",
        "negative",
        "no-size",
        "too-many",
        "wrong-size",
        "no-size-info",
        "not-json",
        "too-big",
    ],
)
def test_an_invalid_answer_is_refused_with_the_reason_and_changes_nothing(
    world: World, body: Any, reason: str
) -> None:
    world.open("ll-a", 10.0)
    world.next("alice")
    response = world.answer("alice", "ll-a", body)
    assert response.status == 400
    assert reason in response.document["message"]
    assert not world.task("ll-a").answered and world.store.keys() == []


def test_answers_without_a_claim_are_forbidden_and_repeated_or_late_ones_conflict(world: World) -> None:
    world.open("ll-a", 10.0)
    assert world.answer("bob", "ll-a", answer(BOX)).status == 403  # no claim
    world.next("alice")
    assert world.answer("bob", "ll-a", answer(BOX)).status == 403  # someone else's claim
    assert world.answer("alice", "ll-a", answer(BOX)).status == 200
    assert world.answer("alice", "ll-a", answer(BOX)).status == 409  # answered already
    assert world.answer("bob", "ll-missing", answer(BOX)).status == 404
    world.open("ll-b", 20.0)
    world.next("carol")
    world.clock.advance(3601)
    assert world.answer("carol", "ll-b", answer(BOX)).status == 409  # expired


def test_task_count_two_needs_two_distinct_reviewers(world: World) -> None:
    world.open("ll-a", 10.0, needed=2)
    assert world.next("alice").document["taskId"] == "ll-a"
    assert world.next("bob").document["taskId"] == "ll-a"
    assert world.next("carol").status == 204  # both slots are held
    first = world.answer("alice", "ll-a", answer(BOX))
    assert (first.document["answers"], first.document["completed"]) == (1, False)
    assert world.next("alice").status == 204  # alice answered: never this task again
    assert world.publisher.of_type("ReviewCompleted") == []
    assert world.answer("bob", "ll-a", answer({**BOX, "left": 14})).document["completed"]
    output = world.store.document(world.store.keys("reviews/")[0])
    assert [human["workerId"] for human in output["humanAnswers"]] == ["alice", "bob"]
    assert parse_output(output).boxes == [("pizza", PixelBox(13, 22, 100, 50))]  # consolidated


def test_an_abandoned_claim_expires_and_the_task_returns_to_the_queue(world: World) -> None:
    world.open("ll-a", 10.0)
    world.next("alice")
    assert world.next("bob").status == 204
    world.clock.advance(601)
    assert world.next("bob").document["taskId"] == "ll-a"
    assert world.answer("alice", "ll-a", answer(BOX)).status == 403  # alice's claim is gone


def test_a_released_task_is_claimable_again(world: World) -> None:
    world.open("ll-a", 10.0)
    world.next("alice")
    assert world.call("POST /api/tasks/{taskId}/release", "bob", "ll-a").status == 403
    assert world.call("POST /api/tasks/{taskId}/release", "alice", "ll-a").status == 200
    assert world.next("bob").document["taskId"] == "ll-a"


def test_the_sweeper_expires_unfinished_tasks_like_a2i_and_keeps_partial_answers(world: World) -> None:
    world.open("ll-a", 10.0, needed=2)
    world.open("ll-b", 20.0)
    world.next("alice")
    world.answer("alice", "ll-a", answer(BOX))
    assert world.sweeper.sweep().to_dict() == {"completed": 0, "expired": 0, "open": 2}
    world.clock.advance(3600)
    assert world.sweeper.sweep().to_dict() == {"completed": 0, "expired": 2, "open": 0}
    expired = {detail["reviewName"]: detail for detail in world.publisher.of_type("ReviewCompleted")}
    assert expired["ll-a"]["status"] == "Failed" and expired["ll-a"]["failureCode"] == "Expired"
    assert "1 of 2 answers" in expired["ll-a"]["failureReason"]
    assert "outputS3Uri" in expired["ll-a"] and "outputS3Uri" not in expired["ll-b"]
    assert world.task("ll-a").status == world.task("ll-b").status == review_tasks.EXPIRED
    assert world.sweeper.sweep().to_dict() == {"completed": 0, "expired": 0, "open": 0}


def answer_then_crash_before_completion(world: World) -> None:
    """Task ll-a gets its one answer; the answering invocation dies before ReviewCompleted."""
    world.open("ll-a", 10.0)
    world.next("alice")
    world.publisher.failures.append(RuntimeError("the function crashed before ReviewCompleted"))
    with pytest.raises(RuntimeError):
        world.answer("alice", "ll-a", answer(BOX))


def test_the_sweeper_finishes_a_completion_a_crash_interrupted(world: World) -> None:
    answer_then_crash_before_completion(world)
    assert world.task("ll-a").status == review_tasks.OPEN and world.task("ll-a").complete
    # Within the review API's timeout the answering invocation may still be completing it.
    assert world.sweeper.sweep().to_dict() == {"completed": 0, "expired": 0, "open": 1}
    assert world.publisher.of_type("ReviewCompleted") == []
    world.clock.advance(COMPLETION_GRACE_SECONDS)
    assert world.sweeper.sweep().to_dict() == {"completed": 1, "expired": 0, "open": 0}
    (completed,) = world.publisher.of_type("ReviewCompleted")
    assert completed["reviewName"] == "ll-a" and world.task("ll-a").status == review_tasks.COMPLETED


def test_the_sweeper_completes_a_finished_task_past_its_lifetime_instead_of_expiring_it(world: World) -> None:
    answer_then_crash_before_completion(world)
    world.clock.advance(3600)  # past the availability lifetime, every answer in
    assert world.sweeper.sweep().to_dict() == {"completed": 1, "expired": 0, "open": 0}
    (completed,) = world.publisher.of_type("ReviewCompleted")
    assert completed["status"] == "Completed"
