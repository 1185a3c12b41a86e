"""Plain-Python reads and writes of one DynamoDB table, SDK errors translated once, here; shared by the
ledger and the review task adapters (their item layouts live in `labelloop_core.ledger` and
`labelloop_core.review_tasks`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.adapters.dynamodb_codec import decode_item, encode_item, encode_values

Key = Mapping[str, Any]
_NAME = re.compile(r"#([A-Za-z_][A-Za-z0-9_]*)")


class Table:
    """One table. `constants` are expression values every expression of this table may use (e.g. the
    ledger's status names): only those an expression names are sent (DynamoDB rejects unused ones)."""

    def __init__(self, name: str, client: Any = None, constants: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self._client = client
        self.constants = dict(constants or {})

    client = LazyClient("dynamodb")

    def get(self, key: Key) -> dict[str, Any] | None:
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

    def expression(self, text: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """ExpressionAttributeNames (every `#name` of `text`) and the values `text` uses."""
        names = {f"#{name}": name for name in _NAME.findall(text)}
        available = {**self.constants, **values}
        used = {key: value for key, value in available.items() if re.search(re.escape(key) + r"(?!\w)", text)}
        result: dict[str, Any] = {}
        if names:
            result["ExpressionAttributeNames"] = names
        if used:
            result["ExpressionAttributeValues"] = encode_values(used)
        return result

    def put_action(self, item: Mapping[str, Any], condition: str | None = None) -> dict[str, Any]:
        action: dict[str, Any] = {"TableName": self.name, "Item": encode_item(item)}
        if condition:
            action.update(ConditionExpression=condition, **self.expression(condition, {}))
        return {"Put": action}

    def update_action(
        self, key: Key, update: str, condition: str | None, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        action: dict[str, Any] = {"TableName": self.name, "Key": encode_item(key), "UpdateExpression": update}
        if condition:
            action["ConditionExpression"] = condition
        action.update(self.expression(f"{update} {condition or ''}", values))
        return {"Update": action}

    def conditional_update(
        self, key: Key, update: str, condition: str, values: Mapping[str, Any], **extra: Any
    ) -> bool:
        """UpdateItem with a condition; False when the condition did not hold."""
        return self.conditional(
            "update_item", **self.update_action(key, update, condition, values)["Update"], **extra
        )

    def conditional_update_returning(
        self, key: Key, update: str, condition: str, values: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """UpdateItem with a condition: the item as this very write left it (ReturnValues ALL_NEW, so no
        later write can be mistaken for this one's result), or None when the condition did not hold."""
        request = self.update_action(key, update, condition, values)["Update"]
        try:
            response = self.client.update_item(**request, ReturnValues="ALL_NEW")
        except Exception as error:
            if aws_errors.error_code(error) == aws_errors.CONDITION_FAILED:
                return None
            raise translate(error) from error
        return decode_item(response["Attributes"])


def translate(error: Exception) -> Exception:
    if aws_errors.is_retryable(error):
        return aws_errors.retry_later(error, f"DynamoDB is throttling or failing: {error}")
    return error
