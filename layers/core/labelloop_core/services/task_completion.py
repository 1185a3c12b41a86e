"""Finishing a built-in review task, shared by the review API (the answer that fills the last slot)
and the sweeper (a completion a crash interrupted, an expired task).

Order matters for crashes: output.json first (create-only), then `ReviewCompleted`, then the task is
marked finished. A crash before the mark leaves the task open with all its answers, and the sweeper
finishes it; the worst case is a second `ReviewCompleted` for the same review, which AppendLabels
treats as the duplicate it is. Nothing a reviewer submitted is lost, not even the answers of a task
that expired before it had them all: they are written to output.json too.
"""

from __future__ import annotations

from typing import Any

from labelloop_core import observability, review_tasks
from labelloop_core.ports import EventPublisher, ObjectStore, TaskStore
from labelloop_core.review_tasks import Task


class TaskCompletion:
    def __init__(self, store: ObjectStore, publisher: EventPublisher, tasks: TaskStore) -> None:
        self.store = store
        self.publisher = publisher
        self.tasks = tasks
        self.log = observability.logger()

    def complete(self, task: Task) -> dict[str, Any]:
        """Every answer is in: output.json, ReviewCompleted (Completed), task COMPLETED."""
        key = self._write_output(task)
        finished = max(str((slot.answer or {}).get("submittedAt", "")) for slot in task.answered)
        detail = self._detail(task, "Completed", finished, key)
        self.publisher.publish("ReviewCompleted", detail)
        if self.tasks.finish(task.task_id, review_tasks.COMPLETED, key):
            observability.count("ReviewTasksCompleted")
        self.log.info("review task completed", extra={"task_id": task.task_id, "output_key": key})
        return detail

    def expire(self, task: Task) -> dict[str, Any]:
        """Not finished within its availability lifetime: recorded as A2I records an expired loop."""
        key = self._write_output(task) if task.answered else None
        answers = len(task.answered)
        detail = self._detail(task, "Failed", review_tasks.iso_time(task.expires_at), key)
        detail["failureCode"] = review_tasks.EXPIRED_CODE
        detail["failureReason"] = (
            f"the review expired at {detail['finishedAt']} with {answers} of {task.answers_needed} answers"
        )
        self.publisher.publish("ReviewCompleted", detail)
        if self.tasks.finish(task.task_id, review_tasks.EXPIRED, key):
            observability.count("ReviewTasksExpired")
        self.log.warning("review task expired", extra={"task_id": task.task_id, "answers": answers})
        return detail

    def _write_output(self, task: Task) -> str:
        key = review_tasks.output_key(task)
        self.store.create_json(key, review_tasks.output_document(task))
        return key

    def _detail(self, task: Task, status: str, finished_at: str, key: str | None) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "schemaVersion": "1",
            "reviewName": task.task_id,
            "status": status,
            "answers": len(task.answered),
            "answersNeeded": task.answers_needed,
            "finishedAt": finished_at,
        }
        if key is not None:
            detail["outputS3Uri"] = f"s3://{self.store.bucket}/{key}"
        return detail
