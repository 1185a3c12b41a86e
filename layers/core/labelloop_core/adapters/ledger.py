"""The ledger on DynamoDB: `ReviewLedger` (images, reviews, labels) and `TrainingLedger` (the training
cycle) over one table, with the keys, records and conditions of `labelloop_core.ledger`.

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
from typing import Any

from labelloop_core import ledger as layout
from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.adapters.dynamodb_codec import decode_item, encode_item, encode_values
from labelloop_core.errors import LabelloopError, TransientError
from labelloop_core.ledger import (
    CLAIMED,
    IMAGE_STAGES,
    LOOP_STAGES,
    PENDING_INDEX,
    PENDING_VALUE,
    TRAINING,
    ClaimResult,
    DatasetRecord,
    Decision,
    ImageRecord,
    LabelRecord,
    LoopRecord,
    PendingLabel,
    TrainingLock,
    iso,
)
from labelloop_core.naming import ImageRef

_TRANSACTION_ITEMS = 100  # TransactWriteItems limit
_TRANSACTION_ATTEMPTS = 8


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Table:
    """Plain-Python reads and writes of one table; SDK errors translated once, here."""

    def __init__(self, name: str, client: Any = None) -> None:
        self.name = name
        self._client = client

    client = LazyClient("dynamodb")

    def get(self, key: layout.Key) -> dict[str, Any] | None:
        response = self.call("get_item", TableName=self.name, Key=encode_item(key), ConsistentRead=True)
        item = response.get("Item")
        return decode_item(item) if item else None

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except Exception as error:
            raise translate(error) from error
        return response

    def conditional(self, operation: str, **kwargs: Any) -> bool:
        """A write with a ConditionExpression: False when the condition did not hold."""
        try:
            getattr(self.client, operation)(**kwargs)
        except Exception as error:
            if aws_errors.error_code(error) == aws_errors.CONDITION_FAILED:
                return False
            raise translate(error) from error
        return True

    def transact(self, actions: list[dict[str, Any]]) -> list[str] | None:
        """Run a transaction; the per-action cancellation codes when it was cancelled, else None."""
        try:
            self.client.transact_write_items(TransactItems=actions)
        except Exception as error:
            codes = aws_errors.cancellation_codes(error)
            if codes is None:
                raise translate(error) from error
            return codes
        return None

    def put_action(self, item: Mapping[str, Any], condition: str | None = None) -> dict[str, Any]:
        action: dict[str, Any] = {"TableName": self.name, "Item": encode_item(item)}
        if condition:
            action.update(ConditionExpression=condition, **expression(condition, {}))
        return {"Put": action}

    def update_action(
        self, key: layout.Key, update: str, condition: str | None, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        action: dict[str, Any] = {"TableName": self.name, "Key": encode_item(key), "UpdateExpression": update}
        if condition:
            action["ConditionExpression"] = condition
        action.update(expression(f"{update} {condition or ''}", values))
        return {"Update": action}


def translate(error: Exception) -> Exception:
    if aws_errors.is_retryable(error):
        return TransientError(f"DynamoDB is throttling or failing: {error}")
    return error


def expression(text: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Names and values for an expression: only those it uses (DynamoDB rejects unused ones)."""
    names = {name: name[1:] for name in ("#status", "#window", "#stage", "#count") if name in text}
    used = {key: value for key, value in {**layout.STATUS_VALUES, **values}.items() if key in text}
    result: dict[str, Any] = {}
    if names:
        result["ExpressionAttributeNames"] = names
    if used:
        result["ExpressionAttributeValues"] = encode_values(used)
    return result


class ReviewLedger:
    """Image versions, reviews and labels."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = _Table(table, client)

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
    def put_label(self, loop_name: str, label_key: str, source_ref: str, created_at: str) -> bool:
        """Record a new label and count it as pending, atomically. False if it was already recorded."""
        item = {
            **layout.label_key(loop_name),
            "loop_name": loop_name,
            "label_key": label_key,
            "source_ref": source_ref,
            "created_at": created_at,
            "pending": PENDING_VALUE,
            "event_sent": False,
        }
        actions = [
            self.table.put_action(item, layout.CREATE_ONLY),
            self.table.update_action(layout.PENDING_COUNTER_KEY, "ADD #count :one", None, {":one": 1}),
        ]
        for attempt in range(_TRANSACTION_ATTEMPTS):
            codes = self.table.transact(actions)
            if codes is None:
                return True
            if codes and codes[0] == "ConditionalCheckFailed":
                return False
            if "TransactionConflict" not in codes:
                raise TransientError(f"label {loop_name}: transaction cancelled {codes}")
            # Concurrent labels all ADD to the one counter item: back off and try again.
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # jitter, not crypto
        raise TransientError(f"label {loop_name}: transaction kept conflicting with concurrent writes")

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


class TrainingLedger:
    """Pending labels, the training lock, schedule windows and promotion decisions.

    The lock item outlives trainings: its status says whether one is in progress and it remembers
    the last merged manifest, which is the base of the next one.
    """

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = _Table(table, client)

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


class _AlreadySettled(LabelloopError):
    """A label of the batch was no longer pending."""
