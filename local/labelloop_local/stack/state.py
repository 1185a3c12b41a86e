"""The running local stack's state file, which `labelloop local upload|replay|...` read to find it.

Light on purpose: the CLI imports it without loading the local stack (moto, the template reader).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATE_FILE = Path(".labelloop") / "stack.json"


class StackError(Exception):
    """The local stack cannot start or an operation on it failed; the message says which part and why."""


def write_state(state: Mapping[str, Any], path: Path = STATE_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2), encoding="utf-8")
    return path


def read_state(path: Path = STATE_FILE) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackError(f"{path} not found: start the stack first with `labelloop local up`") from None
    except ValueError as exc:
        raise StackError(f"{path} is not valid JSON ({exc}); restart `labelloop local up`") from exc
    if not isinstance(state, dict):
        raise StackError(f"{path} does not describe a stack; restart `labelloop local up`")
    return state
