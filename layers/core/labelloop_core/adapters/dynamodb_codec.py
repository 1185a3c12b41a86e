"""DynamoDB attribute values <-> plain Python, shared by the ledger adapters.

Unlike boto3's TypeSerializer it takes floats, and it reads numbers back as int or float rather
than Decimal, so ledger items compare and serialise like the JSON documents they sit beside.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def _encode(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(key): _encode(item) for key, item in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [_encode(item) for item in value]}
    raise TypeError(
        f"cannot store {type(value).__name__} in the ledger: {json.dumps(value, default=str)[:80]}"
    )


def _decode(attribute: Mapping[str, Any]) -> Any:
    kind, value = next(iter(attribute.items()))
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() and "." not in value else float(number)
    if kind == "M":
        return {key: _decode(item) for key, item in value.items()}
    if kind == "L":
        return [_decode(item) for item in value]
    if kind == "NULL":
        return None
    return value


def encode_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _encode(value) for key, value in item.items() if value is not None}


def encode_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _encode(value) for key, value in values.items()}


def decode_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _decode(value) for key, value in item.items()}
