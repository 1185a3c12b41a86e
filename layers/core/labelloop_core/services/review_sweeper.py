"""ReviewSweeper (schedule, built-in backend): finish what no reviewer's request will finish.

- a task whose every answer is in but that is still open (the answering invocation crashed between
  its answer and the completion) is completed, once its last answer is older than the review API's
  timeout (`COMPLETION_GRACE_SECONDS`): before that, the answering invocation may still be completing it,
  and two completions at once would send ReviewCompleted twice and race for output.json;
- a task past its availability lifetime (`TaskAvailabilityLifetimeInSeconds`) is expired and recorded
  as A2I records an expired loop (`ReviewCompleted` with status Failed and failure code Expired), with
  whatever answers it got written to output.json: nothing is silently dropped.

An abandoned claim needs nothing: a claim is valid until its time, after which the slot is free again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from labelloop_core import config, observability, review_tasks
from labelloop_core.inbound.schedule import ScheduleTick
from labelloop_core.ports import TaskStore
from labelloop_core.services.task_completion import TaskCompletion

# Longer than ReviewApiFunction's Timeout (10 s in template.yaml): by then the invocation that wrote the
# last answer has completed the task or died.
COMPLETION_GRACE_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class ReviewSweeperSettings:
    bucket_name: str = config.bucket_name()
    task_table: str = config.task_table()
    event_bus_name: str = config.event_bus_name()


@dataclass(frozen=True)
class SweepOutcome:
    completed: int
    expired: int
    open: int

    def to_dict(self) -> dict[str, Any]:
        return {"completed": self.completed, "expired": self.expired, "open": self.open}


class ReviewSweeperService:
    settings_type: ClassVar[type[ReviewSweeperSettings]] = ReviewSweeperSettings

    def __init__(
        self,
        settings: ReviewSweeperSettings,
        tasks: TaskStore,
        completion: TaskCompletion,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.completion = completion
        self.clock = clock or (lambda: datetime.now(UTC))
        self.log = observability.logger()

    @classmethod
    def from_settings(cls, settings: ReviewSweeperSettings) -> ReviewSweeperService:
        from labelloop_core.adapters.events import EventBridgePublisher
        from labelloop_core.adapters.review_tasks import TaskTable
        from labelloop_core.adapters.s3store import S3Store

        tasks = TaskTable(settings.task_table)
        completion = TaskCompletion(
            S3Store(settings.bucket_name), EventBridgePublisher(settings.event_bus_name), tasks
        )
        return cls(settings, tasks, completion)

    def handle(self, request: ScheduleTick) -> SweepOutcome:
        return self.sweep()

    def sweep(self) -> SweepOutcome:
        now = review_tasks.epoch(self.clock())
        completed = expired = still_open = 0
        for listed in self.tasks.open_tasks():
            # The index is eventually consistent: act on the task as the table has it now.
            task = self.tasks.get(listed.task_id) if listed.complete or listed.expires_at <= now else listed
            if task is None or task.status != review_tasks.OPEN:
                continue
            if task.complete:
                if not _answering_is_over(task, now):
                    still_open += 1  # its answering invocation may be completing it right now
                    continue
                self.completion.complete(task)
                completed += 1
            elif task.expires_at <= now:
                self.completion.expire(task)
                expired += 1
            else:
                still_open += 1
        if completed or expired:
            self.log.info("review tasks swept", extra={"completed": completed, "expired": expired})
        return SweepOutcome(completed, expired, still_open)


def _answering_is_over(task: review_tasks.Task, now: float) -> bool:
    last = task.last_answered_at
    return last is None or last <= now - COMPLETION_GRACE_SECONDS
