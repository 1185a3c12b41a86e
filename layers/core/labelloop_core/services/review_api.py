"""The review API of the built-in backend (behind the HTTP API's JWT authorizer, payload format 2.0).

API Gateway has already checked the Cognito token (issuer, audience/client id, expiry, signature); the
caller is the token's `sub`, which is also the `workerId` of its answers.

- `GET /api/tasks/next`: 200 with the next task in priority order, claimed for the caller for
  `TASK_TIME_LIMIT_SECONDS` (the caller's current claim, if it holds one), or 204;
- `GET /api/tasks/{taskId}`: 200 while the caller holds the claim, 403 otherwise, 404 if unknown;
- `POST /api/tasks/{taskId}/answer`: A2I's answer shape; 200, 400 (invalid answer, with the reason),
  403 (no claim held), 409 (already answered by the caller, completed or expired);
- `POST /api/tasks/{taskId}/release`: 200, the slot is claimable again (403 without a claim).

A task's `imageUrl` is a pre-signed GET of the exact image version that was detected, expiring with
the claim: a reviewer reaches only images of tasks they hold. The answer that fills the last slot
completes the task (`TaskCompletion`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from labelloop_core import config, observability, review_tasks
from labelloop_core.config import setting
from labelloop_core.http import HttpResponse, json_response, problem
from labelloop_core.inbound.http_api import HttpRequest
from labelloop_core.ports import ImageLinks, TaskStore
from labelloop_core.review_tasks import InvalidAnswer, Slot, Task
from labelloop_core.services.task_completion import TaskCompletion

SCAN_LIMIT = 200  # open tasks one `next` looks at, in priority order


@dataclass(frozen=True, kw_only=True)
class ReviewApiSettings:
    bucket_name: str = config.bucket_name()
    task_table: str = config.task_table()
    event_bus_name: str = config.event_bus_name()
    task_time_limit_seconds: int = setting("TASK_TIME_LIMIT_SECONDS", config.integer_between(30, 28800), 600)


class ReviewApiService:
    settings_type: ClassVar[type[ReviewApiSettings]] = ReviewApiSettings

    def __init__(
        self,
        settings: ReviewApiSettings,
        tasks: TaskStore,
        links: ImageLinks,
        completion: TaskCompletion,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.links = links
        self.completion = completion
        self.clock = clock or (lambda: datetime.now(UTC))
        self.log = observability.logger()
        self.routes: dict[str, Callable[[HttpRequest, str], HttpResponse]] = {
            "GET /api/tasks/next": self.next_task,
            "GET /api/tasks/{taskId}": self.get_task,
            "POST /api/tasks/{taskId}/answer": self.answer,
            "POST /api/tasks/{taskId}/release": self.release,
        }

    @classmethod
    def from_settings(cls, settings: ReviewApiSettings) -> ReviewApiService:
        from labelloop_core.adapters.events import EventBridgePublisher
        from labelloop_core.adapters.review_tasks import TaskTable
        from labelloop_core.adapters.s3store import S3Store

        tasks = TaskTable(settings.task_table)
        store = S3Store(settings.bucket_name)
        completion = TaskCompletion(store, EventBridgePublisher(settings.event_bus_name), tasks)
        return cls(settings, tasks, store, completion)

    def handle(self, request: HttpRequest) -> HttpResponse:
        route = self.routes.get(request.route_key)
        if route is None:
            return problem(404, f"no route {request.method} {request.path}")
        worker = request.claims.get("sub")
        if not isinstance(worker, str) or not worker:  # API Gateway's authorizer refuses these first
            return problem(401, "Unauthorized")
        response = route(request, worker)
        observability.count(f"ReviewApi{response.status}")
        return response

    # -- routes -------------------------------------------------------------------------------------
    def next_task(self, request: HttpRequest, worker: str) -> HttpResponse:
        now = self._now()
        candidates: list[Task] = []
        for task in self.tasks.open_tasks():
            slot = task.held_by(worker, now)
            if slot is not None:  # the caller's current claim comes first
                return self._view(task, slot, now)
            candidates.append(task)
            if len(candidates) >= SCAN_LIMIT:
                break
        until = now + self.settings.task_time_limit_seconds
        for task in candidates:
            claimed = self._claim_a_slot(task, worker, now, until)
            if claimed is not None:
                held, slot = claimed
                self.log.info("task claimed", extra={"task_id": task.task_id, "slot": slot.index})
                return self._view(held, slot, now)
        return json_response(204)

    def get_task(self, request: HttpRequest, worker: str) -> HttpResponse:
        task = self.tasks.get(request.path_parameters.get("taskId", ""))
        if task is None:
            return problem(404, "no such task")
        now = self._now()
        slot = task.held_by(worker, now)
        if slot is None:
            return problem(403, "you hold no claim on this task")
        return self._view(task, slot, now)

    def answer(self, request: HttpRequest, worker: str) -> HttpResponse:
        task_id = request.path_parameters.get("taskId", "")
        task = self.tasks.get(task_id)
        if task is None:
            return problem(404, "no such task")
        now = self._now()
        refused = self._refusal(task, worker, now)
        if refused is not None:
            return refused
        slot = task.held_by(worker, now)
        assert slot is not None
        try:
            result = review_tasks.parse_answer(request.body, task)
        except InvalidAnswer as invalid:
            return problem(400, str(invalid))
        issuer = str(request.claims.get("iss", ""))
        stored = review_tasks.stored_answer(result, self.clock(), issuer)
        answered = self.tasks.answer(task_id, slot.index, worker, stored, now)
        if answered is None:
            current = self.tasks.get(task_id)  # what changed since we read it decides the status
            refused = self._refusal(current, worker, now) if current else None
            return refused or problem(409, "the task changed; fetch it again")
        # The task as this answer's own write left it: of reviewers answering at once, exactly one
        # fills the last slot, so the task is completed (and ReviewCompleted sent) once.
        completed = answered.complete
        if completed:
            self.completion.complete(answered)
        self.log.info("answer recorded", extra={"task_id": task_id, "completed": completed})
        body = {
            "taskId": task_id,
            "answers": len(answered.answered),
            "answersNeeded": answered.answers_needed,
            "completed": completed,
        }
        return json_response(200, body)

    def release(self, request: HttpRequest, worker: str) -> HttpResponse:
        task_id = request.path_parameters.get("taskId", "")
        task = self.tasks.get(task_id)
        if task is None:
            return problem(404, "no such task")
        now = self._now()
        slot = task.held_by(worker, now)
        if slot is None or not self.tasks.release(task_id, slot.index, worker, now):
            return problem(403, "you hold no claim on this task")
        return json_response(200, {"taskId": task_id, "released": True})

    # -- helpers ------------------------------------------------------------------------------------
    def _claim_a_slot(self, task: Task, worker: str, now: float, until: float) -> tuple[Task, Slot] | None:
        """A slot of `task` claimed for `worker`, or None when none is left for them. Reviewers racing
        for one task all see the same first free slot: a lost race (another reviewer's conditional
        write took it) reads the task again and tries the next free slot, not the next task."""
        current: Task | None = task
        for _ in range(review_tasks.MAX_SLOTS + 1):
            free = current.claimable_slot(worker, now) if current is not None else None
            if current is None or free is None:
                return None
            claimed = self.tasks.claim(current, free.index, worker, now, min(until, current.expires_at))
            if claimed is not None:  # the task as the claim left it: no second read
                slot = claimed.held_by(worker, now)
                return (claimed, slot) if slot is not None else None
            current = self.tasks.get(task.task_id)
        return None

    def _refusal(self, task: Task, worker: str, now: float) -> HttpResponse | None:
        if task.answered_by(worker):
            return problem(409, "you have already answered this task")
        if task.status == review_tasks.COMPLETED or task.complete:
            return problem(409, "the task is completed")
        if task.status == review_tasks.EXPIRED or task.expires_at <= now:
            return problem(409, "the task has expired")
        if task.held_by(worker, now) is None:
            return problem(403, "you hold no claim on this task (it may have expired)")
        return None

    def _view(self, task: Task, slot: Slot, now: float) -> HttpResponse:
        url = self.links.link(task.image_ref, int((slot.until or now) - now))
        return json_response(200, review_tasks.task_view(task, slot, url))

    def _now(self) -> float:
        return review_tasks.epoch(self.clock())
