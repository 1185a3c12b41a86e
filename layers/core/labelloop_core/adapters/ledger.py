"""The ledger on DynamoDB: `ReviewLedger` (images, reviews, labels), `TrainingLedger` (the training
cycle) and `ModelLedger` (the model controller's state and the running intervals) over one table,
with the keys, records and conditions of `labelloop_core.ledger`.

Every write is conditional, so replays and duplicate deliveries change nothing; a label is written
together with the pending-label counter in one transaction that does nothing when the label already
exists, so a replay can never count a label twice. DynamoDB throttling and service faults become
`TransientError` (the platform retries).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from labelloop_core import ledger as layout
from labelloop_core.adapters.dynamodb_codec import decode_item, encode_item, encode_values
from labelloop_core.adapters.dynamodb_table import Table
from labelloop_core.errors import LabelloopError, TransientError
from labelloop_core.ledger import (
    CLAIMED,
    IMAGE_STAGES,
    LOOP_STAGES,
    PENDING_INDEX,
    PENDING_VALUE,
    TRAINING,
    WAITING,
    WAITING_INDEX,
    Admission,
    ClaimResult,
    ControlState,
    DatasetRecord,
    Decision,
    ImageRecord,
    LabelRecord,
    LoopRecord,
    OpenRun,
    PendingLabel,
    TrainingLock,
    WaitingReview,
    iso,
)
from labelloop_core.naming import ImageRef, priority_rank

if TYPE_CHECKING:  # the controller reads runs (and imports model_control); other functions never do
    from labelloop_core.model_control import RunInterval

_CONSTANTS = {**layout.STATUS_VALUES, **layout.QUEUE_VALUES}
_TRANSACTION_ITEMS = 100  # TransactWriteItems limit
_TRANSACTION_ATTEMPTS = 8


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ReviewLedger:
    """Image versions, reviews and labels."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = Table(table, client, constants=_CONSTANTS)

    # -- reads -------------------------------------------------------------------------------
    def get_image(self, image_id: str) -> ImageRecord | None:
        item = self.table.get(layout.image_key(image_id))
        return ImageRecord.from_item(item) if item else None

    def get_loop(self, loop_name: str) -> LoopRecord | None:
        item = self.table.get(layout.loop_key(loop_name))
        return LoopRecord.from_item(item) if item else None

    def get_label(self, loop_name: str) -> LabelRecord | None:
        item = self.table.get(layout.label_key(loop_name))
        return LabelRecord.from_item(item) if item else None

    def pending_label_count(self) -> int:
        item = self.table.get(layout.PENDING_COUNTER_KEY)
        return int(item.get("count", 0)) if item else 0

    # -- status writes -----------------------------------------------------------------------
    def record_image(
        self,
        image: ImageRef,
        status: str,
        *,
        reason: str | None = None,
        model_arn: str | None = None,
        loop_name: str | None = None,
    ) -> bool:
        """Set the image status; False (and no change) when the image is already further along."""
        attributes: dict[str, Any] = {
            "image_id": image.image_id,
            "bucket": image.bucket,
            "key": image.key,
            "version_id": image.version_id,
            "etag": image.etag,
            "model_arn": model_arn,
            "loop_name": loop_name,
        }
        return self._staged_update(layout.image_key(image.image_id), status, IMAGE_STAGES, attributes, reason)

    def record_image_status(self, image_id: str, status: str, *, reason: str | None = None) -> bool:
        """Status change for an image known only by id (AppendLabels knows the loop, not the object)."""
        return self._staged_update(
            layout.image_key(image_id), status, IMAGE_STAGES, {"image_id": image_id}, reason
        )

    def record_loop(
        self,
        loop_name: str,
        status: str,
        *,
        image_id: str | None = None,
        label_key: str | None = None,
        failure_reason: str | None = None,
    ) -> bool:
        attributes = {"loop_name": loop_name, "image_id": image_id, "label_key": label_key}
        return self._staged_update(
            layout.loop_key(loop_name),
            status,
            LOOP_STAGES,
            attributes,
            failure_reason,
            reason_attribute="failure_reason",
        )

    # -- labels ------------------------------------------------------------------------------
    def put_label(
        self,
        loop_name: str,
        label_key: str,
        source_ref: str,
        created_at: str,
        agreement: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a new label and count it as pending, atomically. False if it was already recorded.
        `agreement`: the consolidation of several reviewers' answers (reviewers, agreement, ...)."""
        item = {
            **layout.label_key(loop_name),
            "loop_name": loop_name,
            "label_key": label_key,
            "source_ref": source_ref,
            "created_at": created_at,
            "pending": PENDING_VALUE,
            "event_sent": False,
            "consolidation": dict(agreement) if agreement else None,
        }
        actions = [
            self.table.put_action(item, layout.CREATE_ONLY),
            self.table.update_action(layout.PENDING_COUNTER_KEY, "ADD #count :one", None, {":one": 1}),
        ]
        # Concurrent labels all ADD to the one counter item: conflicts are retried.
        codes = _transact_through_conflicts(self.table, actions, f"label {loop_name}")
        if codes is None:
            return True
        if codes and codes[0] == "ConditionalCheckFailed":
            return False
        raise TransientError(f"label {loop_name}: transaction cancelled {codes}")

    def claim_label_event(self, loop_name: str) -> bool:
        """Take the right to publish LabelsAppended for this label; False if already taken."""
        return self._set_event_sent(loop_name, sent=True)

    def release_label_event(self, loop_name: str) -> None:
        """Give the claim back after a failed PutEvents, so the retry publishes."""
        self._set_event_sent(loop_name, sent=False)

    def _set_event_sent(self, loop_name: str, sent: bool) -> bool:
        return self.table.conditional(
            "update_item",
            TableName=self.table.name,
            Key=encode_item(layout.label_key(loop_name)),
            UpdateExpression="SET event_sent = :new",
            ConditionExpression=layout.EVENT_FLAG_IS,
            ExpressionAttributeValues=encode_values({":new": sent, ":old": not sent}),
        )

    def _staged_update(
        self,
        key: layout.Key,
        status: str,
        stages: Mapping[str, int],
        attributes: Mapping[str, Any],
        reason: str | None,
        reason_attribute: str = "reason",
    ) -> bool:
        if status not in stages:
            raise ValueError(f"unknown ledger status {status!r}")
        values: dict[str, Any] = {"status": status, "stage": stages[status], "updated_at": utc_now()}
        values.update({name: value for name, value in attributes.items() if value is not None})
        if reason is not None:
            values[reason_attribute] = reason
        names = {f"#a{i}": name for i, name in enumerate(values)}
        update = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values)))
        if reason is None:  # a stale reason from an earlier status would mislead
            names["#reason"] = reason_attribute
            update += " REMOVE #reason"
        names["#stage"] = "stage"
        expression_values = {f":v{i}": value for i, value in enumerate(values.values())}
        expression_values[":stage"] = stages[status]
        return self.table.conditional(
            "update_item",
            TableName=self.table.name,
            Key=encode_item(key),
            UpdateExpression=update,
            ConditionExpression=layout.STAGE_NOT_BEHIND,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=encode_values(expression_values),
        )


class ReviewQueue:
    """Reviews waiting for the review budget, and the budget's day counters (`labelloop_core.ledger`)."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = Table(table, client, constants=_CONSTANTS)

    def enqueue(self, name: str, detail: Mapping[str, Any], priority: float, requested_at: datetime) -> bool:
        """Keep a review request until the budget admits it; False when it is already kept (a replay)."""
        at = iso(requested_at)
        values = {
            ":name": name,
            ":detail": dict(detail),
            ":priority": priority,
            ":at": at,
            ":waiting": WAITING,
            ":rank": priority_rank(priority, at, name),
        }
        # An UpdateItem that creates (StartReview may update the ledger, never overwrite an item).
        update = (
            "SET review_name = :name, detail = :detail, priority = :priority, requested_at = :at,"
            " #queue = :waiting, #rank = :rank"
        )
        return self.table.conditional_update(layout.waiting_key(name), update, layout.CREATE_ONLY, values)

    def waiting(self, queue: str, limit: int) -> list[WaitingReview]:
        """The first `limit` reviews of `queue` (waiting or admitted), in priority order."""
        response = self.table.call(
            "query",
            TableName=self.table.name,
            IndexName=WAITING_INDEX,
            KeyConditionExpression="#queue = :queue",
            Limit=limit,
            **self.table.expression("#queue = :queue", {":queue": queue}),
        )
        return [WaitingReview.from_item(decode_item(item)) for item in response.get("Items", [])]

    def admit(self, name: str, day: str, max_per_day: int) -> Admission:
        """Count the review against `day` (only below `max_per_day`; 0 is no limit) and mark it admitted
        (only if it still waits), in one transaction."""
        budget = self.table.update_action(
            layout.budget_key(day),
            "ADD opened :one",
            layout.BUDGET_LEFT if max_per_day > 0 else None,
            {":one": 1, ":max": max_per_day},
        )
        admitted = self.table.update_action(
            layout.waiting_key(name),
            "SET #queue = :admitted, admitted_day = :day",
            layout.STILL_WAITING,
            {":day": day},
        )
        codes = _transact_through_conflicts(self.table, [budget, admitted], f"admitting review {name}")
        if codes is None:
            return Admission.ADMITTED
        if codes[0] == "ConditionalCheckFailed":
            return Admission.BUDGET_SPENT
        if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
            return Admission.TAKEN
        raise TransientError(f"admitting review {name} was cancelled: {codes}")

    def opened(self, name: str) -> None:
        """The admitted review is open: it leaves the queue (the item stays, as a record)."""
        self.table.conditional_update(
            layout.waiting_key(name),
            "REMOVE #queue, #rank SET opened_at = :now",
            layout.STILL_ADMITTED,
            {":now": utc_now()},
        )

    def opened_on(self, day: str) -> int:
        item = self.table.get(layout.budget_key(day))
        return int(item.get("opened", 0)) if item else 0


class TrainingLedger:
    """Pending labels, the training lock, schedule windows and promotion decisions.

    The lock item outlives trainings: its status says whether one is in progress and it remembers
    the last merged manifest, which is the base of the next one.
    """

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = Table(table, client, constants=_CONSTANTS)

    # --- the cheap retrain check: one GetItem each ---------------------------------------------
    def pending_count(self) -> int:
        item = self.table.get(layout.PENDING_COUNTER_KEY)
        return int(item.get("count", 0)) if item else 0

    def read_lock(self) -> TrainingLock | None:
        item = self.table.get(layout.TRAINING_LOCK_KEY)
        return TrainingLock.from_item(item) if item else None

    # --- claiming and releasing a retrain window ---------------------------------------------
    def claim(self, window: str, now: datetime) -> ClaimResult:
        """Atomically take the schedule window and the lock.

        A window whose training never started (released, or claimed by an attempt that crashed) can
        be claimed again by a retry of the same event: it reuses the same version name, so that still
        gives at most one training per window.
        """
        window_item = {**layout.window_key(window), "status": CLAIMED, "claimed_at": iso(now)}
        codes = self.table.transact(
            [
                self.table.put_action(window_item, layout.WINDOW_CLAIMABLE),
                self.table.update_action(
                    layout.TRAINING_LOCK_KEY,
                    "SET #status = :claimed, claimed_at = :now, #window = :window"
                    " REMOVE version_arn, version_name, started_at, manifest_key, base_manifest_key,"
                    " previous_arn, candidate",
                    layout.LOCK_FREE,
                    {":now": iso(now), ":window": window, ":stale": iso(now - layout.STALE_CLAIM)},
                ),
            ]
        )
        if codes is None:
            return ClaimResult.CLAIMED
        if codes and codes[0] == "ConditionalCheckFailed":
            return ClaimResult.WINDOW_USED
        if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
            return ClaimResult.TRAINING_IN_PROGRESS
        raise TransientError(f"claiming retrain window {window} was cancelled: {codes}")

    def release_claim(self, window: str, reason: str, now: datetime) -> None:
        """Undo a claim whose training did not start, so the next schedule (or a retry) can try again."""
        released = "SET #status = :released, released_at = :now, release_reason = :reason"
        values = {":now": iso(now), ":reason": reason[:1000], ":window": window}
        # Cancelled: someone else owns the lock now, or the training started: nothing of ours to undo.
        self.table.transact(
            [
                self.table.update_action(layout.window_key(window), released, layout.STILL_CLAIMED, values),
                self.table.update_action(
                    layout.TRAINING_LOCK_KEY, released, layout.CLAIMED_FOR_WINDOW, values
                ),
            ]
        )

    def mark_training(
        self,
        window: str,
        version_arn: str,
        version_name: str,
        manifest_key: str | None,
        base_manifest_key: str | None,
        now: datetime,
    ) -> None:
        """Record the started training on the lock and its window (both keep the version)."""
        started = {"version_arn": version_arn, "version_name": version_name, "started_at": iso(now)}
        values: dict[str, Any] = {
            ":window": window,
            ":arn": version_arn,
            ":name": version_name,
            ":now": iso(now),
        }
        update = "SET #status = :training, version_arn = :arn, version_name = :name, started_at = :now"
        if manifest_key:  # the next training's base: it already holds every label used so far
            update += ", manifest_key = :manifest, last_manifest_key = :manifest"
            values[":manifest"] = manifest_key
        if base_manifest_key:
            update += ", base_manifest_key = :base"
            values[":base"] = base_manifest_key
        window_item = {**layout.window_key(window), "status": TRAINING, **started}
        self.table.call(
            "transact_write_items",
            TransactItems=[
                self.table.update_action(layout.TRAINING_LOCK_KEY, update, layout.OWN_CLAIM, values),
                self.table.put_action(window_item),
            ],
        )

    # --- labels --------------------------------------------------------------------------------
    def pending_labels(self) -> Iterator[PendingLabel]:
        """Labels not yet used for training, oldest first (sparse GSI PendingLabels)."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "IndexName": PENDING_INDEX,
            "KeyConditionExpression": "pending = :one",
            "ExpressionAttributeValues": encode_values({":one": PENDING_VALUE}),
        }
        while True:
            response = self.table.call("query", **request)
            for raw in response.get("Items", []):
                yield PendingLabel.from_item(decode_item(raw))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            request["ExclusiveStartKey"] = last_key

    def settle_labels(
        self, labels: Sequence[PendingLabel], version_name: str, rejected: Mapping[str, str], now: datetime
    ) -> int:
        """Take labels out of the pending set and decrement the counter once per label.

        Labels in `rejected` (loop name → reason) get that reason instead of `consumed_by`: they
        stay in S3 and in the ledger, visible, but no longer count as new labels. Returns how many
        labels this call settled (labels settled by an earlier attempt are skipped).
        """
        settled = 0
        batch_size = _TRANSACTION_ITEMS - 1  # one slot for the counter update
        for start in range(0, len(labels), batch_size):
            batch = labels[start : start + batch_size]
            try:
                self._settle(batch, version_name, rejected, now)
                settled += len(batch)
            except _AlreadySettled:
                for label in batch:  # a replay: settle one by one, skipping those already done
                    try:
                        self._settle([label], version_name, rejected, now)
                        settled += 1
                    except _AlreadySettled:
                        continue
        return settled

    def _settle(
        self, labels: Sequence[PendingLabel], version_name: str, rejected: Mapping[str, str], now: datetime
    ) -> None:
        actions = [
            self._settle_action(label, version_name, rejected.get(label.loop_name), now) for label in labels
        ]
        actions.append(
            self.table.update_action(
                layout.PENDING_COUNTER_KEY, "ADD #count :minus", None, {":minus": -len(labels)}
            )
        )
        codes = self.table.transact(actions)
        if codes is None:
            return
        if "ConditionalCheckFailed" in codes:
            raise _AlreadySettled
        raise TransientError(f"settling {len(labels)} labels was cancelled: {codes}")

    def _settle_action(
        self, label: PendingLabel, version_name: str, rejected_reason: str | None, now: datetime
    ) -> dict[str, Any]:
        values = {":version": version_name, ":now": iso(now)}
        if rejected_reason is None:
            update = "REMOVE pending SET consumed_by = :version, consumed_at = :now"
        else:
            update = (
                "REMOVE pending SET rejected_reason = :reason, rejected_by = :version, rejected_at = :now"
            )
            values[":reason"] = rejected_reason[:1000]
        return self.table.update_action(
            layout.label_key(label.loop_name), update, layout.STILL_PENDING, values
        )

    # --- promotion -----------------------------------------------------------------------------
    def mark_starting(
        self, version_arn: str, previous_arn: str, candidate: Mapping[str, Any], now: datetime
    ) -> bool:
        """TRAINING → STARTING for this version; False when the lock moved on (a replay)."""
        return self._update_lock(
            "SET #status = :starting, previous_arn = :previous, candidate = :candidate, starting_at = :now",
            {":arn": version_arn, ":previous": previous_arn, ":candidate": dict(candidate), ":now": iso(now)},
        )

    def finish(self, version_arn: str, status: str, reason: str, now: datetime) -> bool:
        """Release the lock at the end of a training (PROMOTED or REJECTED); False when already done."""
        return self._update_lock(
            "SET #status = :final, finished_at = :now, finish_reason = :reason",
            {":arn": version_arn, ":final": status, ":now": iso(now), ":reason": reason[:1000]},
        )

    def record_decision(self, version_name: str, decision: Decision) -> None:
        item = {**layout.decision_key(version_name), **decision.to_item()}
        self.table.call("put_item", TableName=self.table.name, Item=encode_item(item))

    def read_decision(self, version_name: str) -> Decision | None:
        item = self.table.get(layout.decision_key(version_name))
        return Decision.from_item(item) if item else None

    # --- training datasets (`labelloop datasets list|diff`) ------------------------------------------
    def record_dataset(self, record: DatasetRecord) -> None:
        """What a training trained on; a retry of the same training writes the same item again."""
        item = {**layout.dataset_key(record.version_name), **record.to_item()}
        self.table.call("put_item", TableName=self.table.name, Item=encode_item(item))

    def read_dataset(self, version_name: str) -> DatasetRecord | None:
        item = self.table.get(layout.dataset_key(version_name))
        return DatasetRecord.from_item(item) if item else None

    def datasets(self) -> Iterator[DatasetRecord]:
        """Every recorded training dataset, oldest first (one partition, sorted by version name)."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": encode_values({":pk": layout.DATASETS_PK}),
        }
        while True:
            response = self.table.call("query", **request)
            for raw in response.get("Items", []):
                yield DatasetRecord.from_item(decode_item(raw))
            if not response.get("LastEvaluatedKey"):
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _update_lock(self, update: str, values: dict[str, Any]) -> bool:
        action = self.table.update_action(layout.TRAINING_LOCK_KEY, update, layout.LOCK_IN_PROMOTION, values)
        return self.table.conditional("update_item", **action["Update"])


def _transact_through_conflicts(table: Table, actions: list[dict[str, Any]], what: str) -> list[str] | None:
    """Run a transaction, retrying it (with jitter) while it conflicts with concurrent transactions on
    the same items; the cancellation codes of any other cancellation, else None."""
    for attempt in range(_TRANSACTION_ATTEMPTS):
        codes = table.transact(actions)
        if codes is None or "TransactionConflict" not in codes:
            return codes
        time.sleep(random.uniform(0, 0.05 * 2**attempt))  # jitter, not crypto
    raise TransientError(f"{what}: the transaction kept conflicting with concurrent writes")


class _AlreadySettled(LabelloopError):
    """A label of the batch was no longer pending."""


class ModelLedger:
    """The ModelController's state item and the model's running intervals (DESIGN §10)."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = Table(table, client)

    def read_control(self) -> ControlState:
        return ControlState.from_item(self.table.get(layout.MODEL_CONTROL_KEY))

    def save_control(self, state: ControlState) -> None:
        """Write the controller's attributes; Detect's `last_detection_at` is left as it is."""
        values = state.to_item()
        names = {f"#a{i}": name for i, name in enumerate(values)}
        update = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values)))
        self.table.call(
            "update_item",
            TableName=self.table.name,
            Key=encode_item(layout.MODEL_CONTROL_KEY),
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=encode_values(
                {f":v{i}": value for i, value in enumerate(values.values())}
            ),
        )

    def record_detection(self, now: datetime) -> None:
        """Detect worked at `now` (never moves the time back when batches finish out of order)."""
        self.table.conditional(
            "update_item",
            TableName=self.table.name,
            Key=encode_item(layout.MODEL_CONTROL_KEY),
            UpdateExpression="SET last_detection_at = :now",
            ConditionExpression=layout.DETECTION_NEWER,
            ExpressionAttributeValues=encode_values({":now": iso(now)}),
        )

    def open_run(self, version_arn: str, run: OpenRun) -> bool:
        """Record a running interval; False when it was recorded already (a retried tick)."""
        item = layout.run_item(version_arn, run)
        return self.table.conditional(
            "put_item",
            TableName=self.table.name,
            Item=encode_item(item),
            ConditionExpression=layout.CREATE_ONLY,
        )

    def close_run(self, version_arn: str, running_at: str, stopped_at: str, reason: str) -> bool:
        """Close a running interval once; False when it is closed already or was never recorded."""
        return self.table.conditional(
            "update_item",
            TableName=self.table.name,
            Key=encode_item(layout.run_key(running_at, version_arn)),
            UpdateExpression="SET stopped_at = :stopped, stop_reason = :reason",
            ConditionExpression=layout.RUN_OPEN,
            ExpressionAttributeValues=encode_values({":stopped": stopped_at, ":reason": reason[:1000]}),
        )

    def runs(self) -> Iterator[RunInterval]:
        """Every running interval, oldest first (one partition: a Query)."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": encode_values({":pk": layout.MODEL_RUNS_PK}),
        }
        while True:
            response = self.table.call("query", **request)
            for raw in response.get("Items", []):
                yield layout.run_from_item(decode_item(raw))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            request["ExclusiveStartKey"] = last_key
