"""The built-in backend's review tasks on DynamoDB (`TASK_TABLE`, layout in `labelloop_core.review_tasks`).

Every write is one conditional UpdateItem or PutItem, so two reviewers can never hold the same slot,
a reviewer never answers a task twice, and an answer needs the claim that is still held.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from labelloop_core import review_tasks as layout
from labelloop_core.adapters.dynamodb_codec import decode_item, encode_item, encode_values
from labelloop_core.adapters.dynamodb_table import Table
from labelloop_core.review_tasks import Task, iso_time

_CONSTANTS = {":open": layout.OPEN, ":one": 1}
TASK_NEW = "attribute_not_exists(task_id)"
TASK_OPEN = "#status = :open AND expires_at > :now"


def _key(task_id: str) -> dict[str, str]:
    return {"task_id": task_id}


def _free(slot: int) -> str:
    expired = f"(until_{slot} < :now AND attribute_not_exists(answer_{slot}))"
    return f"(attribute_not_exists(holder_{slot}) OR {expired})"


def _not_mine(slot: int) -> str:
    return (
        f"(attribute_not_exists(holder_{slot}) OR holder_{slot} <> :worker"
        f" OR (until_{slot} < :now AND attribute_not_exists(answer_{slot})))"
    )


def _held(slot: int) -> str:
    return f"holder_{slot} = :worker AND until_{slot} >= :now AND attribute_not_exists(answer_{slot})"


class TaskTable:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = Table(table, client, constants=_CONSTANTS)

    def create(self, item: Mapping[str, Any]) -> bool:
        """Open a task; False when a task of that name exists (a duplicate or replayed request)."""
        return self.table.conditional(
            "put_item", TableName=self.table.name, Item=encode_item(item), ConditionExpression=TASK_NEW
        )

    def get(self, task_id: str) -> Task | None:
        item = self.table.get(_key(task_id))
        return Task.from_item(item) if item else None

    def open_tasks(self) -> Iterator[Task]:
        """Open tasks in priority order (sparse index `OpenTasks`), page by page."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "IndexName": layout.OPEN_INDEX,
            "KeyConditionExpression": "#open = :flag",
            "ExpressionAttributeNames": {"#open": "open"},
            "ExpressionAttributeValues": encode_values({":flag": layout.OPEN_VALUE}),
        }
        while True:
            response = self.table.call("query", **request)
            for raw in response.get("Items", []):
                yield Task.from_item(decode_item(raw))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            request["ExclusiveStartKey"] = last_key

    def claim(self, task: Task, slot: int, worker: str, now: float, until: float) -> Task | None:
        """`worker` takes `slot` until `until`: only if the slot is free and the worker holds or answered
        no other slot of the task. The task as the claim left it (None when refused)."""
        others = [_not_mine(other) for other in range(task.answers_needed) if other != slot]
        condition = " AND ".join([TASK_OPEN, _free(slot), *others])
        update = f"SET holder_{slot} = :worker, until_{slot} = :until, accepted_{slot} = :accepted"
        values = {":worker": worker, ":now": now, ":until": until, ":accepted": iso_time(now)}
        item = self.table.conditional_update_returning(_key(task.task_id), update, condition, values)
        return Task.from_item(item) if item is not None else None

    def release(self, task_id: str, slot: int, worker: str, now: float) -> bool:
        update = f"REMOVE holder_{slot}, until_{slot}, accepted_{slot}"
        return self.table.conditional_update(
            _key(task_id), update, _held(slot), {":worker": worker, ":now": now}
        )

    def answer(
        self, task_id: str, slot: int, worker: str, answer: Mapping[str, Any], now: float
    ) -> Task | None:
        """Record the answer of the slot's holder, while the claim and the task are open: the task as
        this answer left it (None when refused). Answers are serialized per item, so exactly one of
        them sees the task complete."""
        condition = f"{TASK_OPEN} AND answer_count < answers_needed AND {_held(slot)}"
        update = f"SET answer_{slot} = :answer ADD answer_count :one"
        values = {":worker": worker, ":now": now, ":answer": dict(answer)}
        item = self.table.conditional_update_returning(_key(task_id), update, condition, values)
        return Task.from_item(item) if item is not None else None

    def finish(self, task_id: str, status: str, output_key: str | None) -> bool:
        """OPEN → COMPLETED or EXPIRED (the task leaves the open index); False when already finished."""
        update = "SET #status = :final" + (", output_key = :output" if output_key else "") + " REMOVE #open"
        values = {":final": status, ":output": output_key}
        return self.table.conditional_update(_key(task_id), update, "#status = :open", values)
