"""The DynamoDB ledger (single table, see docs/CONTRACTS.md "Ledger").

Status writes are guarded by a `stage` number so duplicate, replayed or out-of-order events can
never move an item backwards (a late Detect duplicate cannot turn a LABELED image back into
REVIEW_REQUESTED). A label is written together with the pending-label counter in one transaction
that does nothing when the label already exists, so a replay can never count a label twice.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from labelloop_core.adapters.dynamodb_codec import decode_item, encode_values
from labelloop_core.errors import TransientError
from labelloop_core.naming import ImageRef

IMAGE_STAGES = {
    "REJECTED": 1,
    "PREDICTED": 1,
    "REVIEW_REQUESTED": 1,
    "IN_REVIEW": 2,
    "LABELED": 3,
    "REVIEW_FAILED": 3,
    "REVIEW_STOPPED": 3,
}
LOOP_STAGES = {"IN_PROGRESS": 1, "COMPLETED": 2, "FAILED": 2, "STOPPED": 2, "INVALID_REVIEW": 2}
PENDING_COUNTER_KEY = {"pk": "COUNTER#labels", "sk": "PENDING"}
_TRANSACTION_ATTEMPTS = 8


def image_key(image_id: str) -> dict[str, str]:
    return {"pk": f"IMAGE#{image_id}", "sk": "STATE"}


def loop_key(loop_name: str) -> dict[str, str]:
    return {"pk": f"LOOP#{loop_name}", "sk": "STATE"}


def label_item_key(loop_name: str) -> dict[str, str]:
    return {"pk": f"LABEL#{loop_name}", "sk": "LABEL"}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Ledger:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from labelloop_core.adapters import clients

            self._client = clients.dynamodb()
        return self._client

    # -- reads -------------------------------------------------------------------------------
    def get_image(self, image_id: str) -> dict[str, Any] | None:
        return self._get(image_key(image_id))

    def get_loop(self, loop_name: str) -> dict[str, Any] | None:
        return self._get(loop_key(loop_name))

    def get_label(self, loop_name: str) -> dict[str, Any] | None:
        return self._get(label_item_key(loop_name))

    def pending_label_count(self) -> int:
        item = self._get(PENDING_COUNTER_KEY)
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
        return self._staged_update(image_key(image.image_id), status, IMAGE_STAGES, attributes, reason)

    def record_image_status(self, image_id: str, status: str, *, reason: str | None = None) -> bool:
        """Status change for an image known only by id (AppendLabels knows the loop, not the object)."""
        return self._staged_update(image_key(image_id), status, IMAGE_STAGES, {"image_id": image_id}, reason)

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
            loop_key(loop_name),
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
            **label_item_key(loop_name),
            "loop_name": loop_name,
            "label_key": label_key,
            "source_ref": source_ref,
            "created_at": created_at,
            "pending": "1",
            "event_sent": False,
        }
        request = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": encode_values(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": encode_values(PENDING_COUNTER_KEY),
                    "UpdateExpression": "ADD #count :one",
                    "ExpressionAttributeNames": {"#count": "count"},
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
        return self._transact_once(request, what=f"label {loop_name}")

    def claim_label_event(self, loop_name: str) -> bool:
        """Take the right to publish LabelsAppended for this label; False if already taken."""
        return self._set_event_sent(loop_name, sent=True)

    def release_label_event(self, loop_name: str) -> None:
        """Give the claim back after a failed PutEvents, so the retry publishes."""
        self._set_event_sent(loop_name, sent=False)

    def _set_event_sent(self, loop_name: str, sent: bool) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.update_item(
                TableName=self.table,
                Key=encode_values(label_item_key(loop_name)),
                UpdateExpression="SET event_sent = :new",
                ConditionExpression="attribute_exists(pk) AND event_sent = :old",
                ExpressionAttributeValues={":new": {"BOOL": sent}, ":old": {"BOOL": not sent}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- internals ---------------------------------------------------------------------------
    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table, Key=encode_values(key), ConsistentRead=True)
        item = response.get("Item")
        return decode_item(item) if item else None

    def _staged_update(
        self,
        key: dict[str, str],
        status: str,
        stages: dict[str, int],
        attributes: dict[str, Any],
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
        from botocore.exceptions import ClientError

        try:
            self.client.update_item(
                TableName=self.table,
                Key=encode_values(key),
                UpdateExpression=update,
                ConditionExpression="attribute_not_exists(#stage) OR #stage <= :stage",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=encode_values(expression_values),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _transact_once(self, request: list[dict[str, Any]], what: str) -> bool:
        """Run a transaction whose first item is create-only; retry write conflicts with jitter."""
        from botocore.exceptions import ClientError

        for attempt in range(_TRANSACTION_ATTEMPTS):
            try:
                self.client.transact_write_items(TransactItems=request)
                return True
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                codes = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
                if codes and codes[0] == "ConditionalCheckFailed":
                    return False
                if "TransactionConflict" not in codes:
                    raise
            # Concurrent labels all ADD to the one counter item: back off and try again.
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # jitter, not crypto
        raise TransientError(f"{what}: transaction kept conflicting with concurrent writes")
