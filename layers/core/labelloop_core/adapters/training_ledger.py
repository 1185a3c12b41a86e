"""Ledger items of the training cycle: pending labels, counter, training lock, windows, decisions.

Keys follow docs/CONTRACTS.md "Ledger". The lock item (`TRAINING`/`CURRENT`) outlives trainings:
its status says whether one is in progress and it remembers the last merged manifest, which is the
base of the next one. Every write is conditional so replays and duplicate deliveries change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from labelloop_core.adapters.dynamodb_codec import decode_item, encode_item, encode_values
from labelloop_core.errors import LabelloopError, TransientError

LOCK_KEY = {"pk": {"S": "TRAINING"}, "sk": {"S": "CURRENT"}}
COUNTER_KEY = {"pk": {"S": "COUNTER#labels"}, "sk": {"S": "PENDING"}}
PENDING_INDEX = "PendingLabels"
PENDING_VALUE = "1"
LABEL_PREFIX = "LABEL#"
# Lock statuses. CLAIMED: a Retrain invocation is preparing a training; TRAINING: Rekognition trains;
# STARTING: Promote decided to promote and the candidate is being started. Anything else is finished.
CLAIMED, TRAINING, STARTING = "CLAIMED", "TRAINING", "STARTING"
BUSY_STATUSES = (CLAIMED, TRAINING, STARTING)
PROMOTED, REJECTED, RELEASED = "PROMOTED", "REJECTED", "RELEASED"
# A CLAIMED lock older than the longest Lambda run belongs to a crashed invocation.
STALE_CLAIM = timedelta(minutes=15)
_TRANSACTION_ITEMS = 100  # TransactWriteItems limit
_RETRYABLE = {"ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError"}


class ClaimResult(Enum):
    CLAIMED = "claimed"
    WINDOW_USED = "window already used"
    TRAINING_IN_PROGRESS = "training in progress"


@dataclass(frozen=True)
class TrainingLock:
    status: str
    window: str | None = None
    version_arn: str | None = None
    version_name: str | None = None
    started_at: str | None = None
    claimed_at: str | None = None
    manifest_key: str | None = None
    base_manifest_key: str | None = None
    last_manifest_key: str | None = None
    previous_arn: str | None = None
    candidate: Mapping[str, Any] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return self.status in BUSY_STATUSES

    def resumable(self, window: str) -> bool:
        """Claimed for `window` by an attempt that failed before Rekognition accepted the training."""
        return self.status == CLAIMED and self.window == window

    def busy_at(self, now: datetime) -> bool:
        """Busy, unless it is a claim abandoned by a crashed invocation."""
        if self.status != CLAIMED:
            return self.busy
        return not self.claimed_at or self.claimed_at >= _iso(now - STALE_CLAIM)


@dataclass(frozen=True)
class PendingLabel:
    loop_name: str
    label_key: str
    created_at: str


class TrainingLedger:
    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from labelloop_core.adapters import clients

            self._client = clients.dynamodb()
        return self._client

    # --- the cheap retrain check: one GetItem each ---------------------------------------------

    def pending_count(self) -> int:
        item = self._get(COUNTER_KEY)
        return int(item.get("count", 0)) if item else 0

    def read_lock(self) -> TrainingLock | None:
        item = self._get(LOCK_KEY)
        if not item:
            return None
        return TrainingLock(
            status=str(item.get("status", RELEASED)),
            window=item.get("window"),
            version_arn=item.get("version_arn"),
            version_name=item.get("version_name"),
            started_at=item.get("started_at"),
            claimed_at=item.get("claimed_at"),
            manifest_key=item.get("manifest_key"),
            base_manifest_key=item.get("base_manifest_key"),
            last_manifest_key=item.get("last_manifest_key"),
            previous_arn=item.get("previous_arn"),
            candidate=item.get("candidate") or {},
        )

    # --- claiming and releasing a retrain window ---------------------------------------------

    def claim(self, window: str, now: datetime) -> ClaimResult:
        """Atomically take the schedule window and the lock.

        A window whose training never started (released, or claimed by an attempt that crashed) can
        be claimed again by a retry of the same event: it reuses the same version name, so that still
        gives at most one training per window.
        """
        window_item = {"pk": f"RETRAIN#{window}", "sk": "WINDOW", "status": CLAIMED, "claimed_at": _iso(now)}
        lock_free = (
            "attribute_not_exists(pk) OR NOT (#status IN (:claimed, :training, :starting))"
            " OR (#status = :claimed AND (#window = :window OR claimed_at < :stale))"
        )
        actions = [
            self._put(window_item, "attribute_not_exists(pk) OR #status IN (:claimed, :released)"),
            self._update(
                LOCK_KEY,
                "SET #status = :claimed, claimed_at = :now, #window = :window"
                " REMOVE version_arn, version_name, started_at, manifest_key, base_manifest_key,"
                " previous_arn, candidate",
                lock_free,
                {":now": _iso(now), ":window": window, ":stale": _iso(now - STALE_CLAIM)},
            ),
        ]
        try:
            self.client.transact_write_items(TransactItems=actions)
        except Exception as error:
            reasons = _cancellation_codes(error)
            if reasons is None:
                raise _translate(error) from error
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return ClaimResult.WINDOW_USED
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return ClaimResult.TRAINING_IN_PROGRESS
            raise TransientError(f"claiming retrain window {window} was cancelled: {reasons}") from error
        return ClaimResult.CLAIMED

    def release_claim(self, window: str, reason: str, now: datetime) -> None:
        """Undo a claim whose training did not start, so the next schedule (or a retry) can try again."""
        released = "SET #status = :released, released_at = :now, release_reason = :reason"
        values = {":now": _iso(now), ":reason": reason[:1000], ":window": window}
        actions = [
            self._update(
                _window_key(window),
                released,
                "#status = :claimed",
                values,
            ),
            self._update(LOCK_KEY, released, "#status = :claimed AND #window = :window", values),
        ]
        try:
            self.client.transact_write_items(TransactItems=actions)
        except Exception as error:
            if _cancellation_codes(error) is None:
                raise _translate(error) from error
            # Someone else owns the lock now, or the training already started: nothing of ours to undo.

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
        started = {"version_arn": version_arn, "version_name": version_name, "started_at": _iso(now)}
        values: dict[str, Any] = {
            ":window": window,
            ":arn": version_arn,
            ":name": version_name,
            ":now": _iso(now),
        }
        update = "SET #status = :training, version_arn = :arn, version_name = :name, started_at = :now"
        if manifest_key:  # the next training's base: it already holds every label used so far
            update += ", manifest_key = :manifest, last_manifest_key = :manifest"
            values[":manifest"] = manifest_key
        if base_manifest_key:
            update += ", base_manifest_key = :base"
            values[":base"] = base_manifest_key
        window_item = {"pk": f"RETRAIN#{window}", "sk": "WINDOW", "status": TRAINING, **started}
        self._call(
            "transact_write_items",
            TransactItems=[
                self._update(LOCK_KEY, update, _OWN_CLAIM, values),
                self._put(window_item, None),
            ],
        )

    def _put(self, item: Mapping[str, Any], condition: str | None) -> dict[str, Any]:
        """A transaction Put; conditions may use #status and the status values (:claimed, ...)."""
        action: dict[str, Any] = {"TableName": self.table_name, "Item": encode_item(item)}
        if condition:
            action.update(ConditionExpression=condition, **_expression(condition, {}))
        return {"Put": action}

    def _update(
        self, key: dict[str, Any], update: str, condition: str, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A transaction Update; expressions may use #status, #window and the status values."""
        expression = _expression(f"{update} {condition}", values)
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": key,
                "UpdateExpression": update,
                "ConditionExpression": condition,
                **expression,
            }
        }

    # --- labels --------------------------------------------------------------------------------

    def pending_labels(self) -> Iterator[PendingLabel]:
        """Labels not yet used for training, oldest first (sparse GSI PendingLabels)."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": PENDING_INDEX,
            "KeyConditionExpression": "pending = :one",
            "ExpressionAttributeValues": {":one": {"S": PENDING_VALUE}},
        }
        while True:
            response = self._call("query", **request)
            for raw in response.get("Items", []):
                item = decode_item(raw)
                loop_name = str(item["pk"]).removeprefix(LABEL_PREFIX)
                yield PendingLabel(
                    loop_name=loop_name,
                    label_key=str(item.get("label_key") or f"labels/{loop_name}.json"),
                    created_at=str(item.get("created_at", "")),
                )
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
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": COUNTER_KEY,
                    "UpdateExpression": "ADD #count :minus",
                    "ExpressionAttributeNames": {"#count": "count"},
                    "ExpressionAttributeValues": {":minus": {"N": str(-len(labels))}},
                }
            }
        )
        try:
            self.client.transact_write_items(TransactItems=actions)
        except Exception as error:
            codes = _cancellation_codes(error)
            if codes is not None and "ConditionalCheckFailed" in codes:
                raise _AlreadySettled from error
            raise _translate(error) from error

    def _settle_action(
        self, label: PendingLabel, version_name: str, rejected_reason: str | None, now: datetime
    ) -> dict[str, Any]:
        values = {":version": version_name, ":now": _iso(now)}
        if rejected_reason is None:
            update = "REMOVE pending SET consumed_by = :version, consumed_at = :now"
        else:
            update = (
                "REMOVE pending SET rejected_reason = :reason, rejected_by = :version, rejected_at = :now"
            )
            values[":reason"] = rejected_reason[:1000]
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": encode_item({"pk": f"{LABEL_PREFIX}{label.loop_name}", "sk": "LABEL"}),
                "UpdateExpression": update,
                "ConditionExpression": "attribute_exists(pending)",
                "ExpressionAttributeValues": encode_values(values),
            }
        }

    # --- promotion -----------------------------------------------------------------------------

    def mark_starting(
        self, version_arn: str, previous_arn: str, candidate: Mapping[str, Any], now: datetime
    ) -> bool:
        """TRAINING → STARTING for this version; False when the lock moved on (a replay)."""
        return self._update_lock(
            version_arn,
            "SET #status = :starting, previous_arn = :previous, candidate = :candidate, starting_at = :now",
            {
                ":starting": STARTING,
                ":previous": previous_arn,
                ":candidate": dict(candidate),
                ":now": _iso(now),
                ":training": TRAINING,
            },
            "#status IN (:training, :starting)",
        )

    def finish(self, version_arn: str, status: str, reason: str, now: datetime) -> bool:
        """Release the lock at the end of a training (PROMOTED or REJECTED); False when already done."""
        return self._update_lock(
            version_arn,
            "SET #status = :final, finished_at = :now, finish_reason = :reason",
            {
                ":final": status,
                ":now": _iso(now),
                ":reason": reason[:1000],
                ":training": TRAINING,
                ":starting": STARTING,
            },
            "#status IN (:training, :starting)",
        )

    def record_decision(self, version_name: str, decision: Mapping[str, Any]) -> None:
        item = {"pk": f"VERSION#{version_name}", "sk": "DECISION", **decision}
        self._call("put_item", TableName=self.table_name, Item=encode_item(item))

    def read_decision(self, version_name: str) -> dict[str, Any] | None:
        item = self._get(encode_item({"pk": f"VERSION#{version_name}", "sk": "DECISION"}))
        return item or None

    # --- plumbing ------------------------------------------------------------------------------

    def _update_lock(
        self, version_arn: str, update: str, values: dict[str, Any], status_condition: str
    ) -> bool:
        values = {**values, ":arn": version_arn}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=LOCK_KEY,
                UpdateExpression=update,
                ConditionExpression=f"version_arn = :arn AND {status_condition}",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=encode_values(values),
            )
        except Exception as error:
            if _error_code(error) == "ConditionalCheckFailedException":
                return False
            raise _translate(error) from error
        return True

    def _get(self, key: dict[str, Any]) -> dict[str, Any]:
        response = self._call("get_item", TableName=self.table_name, Key=key, ConsistentRead=True)
        return decode_item(response.get("Item") or {})

    def _transact(self, actions: list[dict[str, Any]]) -> None:
        self._call("transact_write_items", TransactItems=actions)

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except Exception as error:
            raise _translate(error) from error
        return response


class _AlreadySettled(LabelloopError):
    """A label of the batch was no longer pending."""


# mark_training: only the invocation that claimed this window may record its training.
_OWN_CLAIM = "#window = :window AND #status IN (:claimed, :training)"
_STATUS_VALUES = {
    ":claimed": CLAIMED,
    ":training": TRAINING,
    ":starting": STARTING,
    ":released": RELEASED,
}


def _expression(text: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Names and values for an expression: only those it uses (DynamoDB rejects unused ones)."""
    names = {name: name[1:] for name in ("#status", "#window") if name in text}
    used = {key: value for key, value in {**_STATUS_VALUES, **values}.items() if key in text}
    result: dict[str, Any] = {}
    if names:
        result["ExpressionAttributeNames"] = names
    if used:
        result["ExpressionAttributeValues"] = encode_values(used)
    return result


def _window_key(window: str) -> dict[str, Any]:
    return encode_item({"pk": f"RETRAIN#{window}", "sk": "WINDOW"})


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _cancellation_codes(error: Exception) -> list[str] | None:
    """Per-action reason codes of a cancelled transaction, None for any other error."""
    if _error_code(error) != "TransactionCanceledException":
        return None
    reasons = getattr(error, "response", {}).get("CancellationReasons") or []
    return [str(reason.get("Code", "None")) for reason in reasons]


def _translate(error: Exception) -> Exception:
    if _error_code(error) in _RETRYABLE:
        return TransientError(f"DynamoDB is throttling or failing: {error}")
    return error
