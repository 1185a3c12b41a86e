"""Where the local stack keeps its files, per user, so that every `labelloop local ...` command finds the
running stack from any directory:

- `$LABELLOOP_HOME` (default `$XDG_STATE_HOME/labelloop`, i.e. `~/.local/state/labelloop`):
  `stack.json` (the running stack: its URLs and endpoint settings; removed when it stops),
  `env-vars.json` (for `sam local invoke --env-vars`), `stack/` (the data directory: moto's snapshot,
  the local services' state, the functions' logs), `stack/.lock` (held while a stack runs on it).

Light on purpose: the CLI imports it without loading the local stack (moto, the template reader).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

HOME_VARIABLE = "LABELLOOP_HOME"


class StackError(Exception):
    """The local stack cannot start or an operation on it failed; the message says which part and why."""


def home() -> Path:
    configured = os.environ.get(HOME_VARIABLE)
    if configured:
        return Path(configured)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "labelloop"


def state_file() -> Path:
    return home() / "stack.json"


def env_vars_file() -> Path:
    return home() / "env-vars.json"


def data_dir() -> Path:
    return home() / "stack"


def write_state(state: Mapping[str, Any], path: Path | None = None) -> Path:
    path = path or state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2), encoding="utf-8")
    return path


def read_state(path: Path | None = None) -> dict[str, Any]:
    path = path or state_file()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackError(f"{path} not found: start the stack first with `labelloop local up`") from None
    except ValueError as exc:
        raise StackError(f"{path} is not valid JSON ({exc}); restart `labelloop local up`") from exc
    if not isinstance(state, dict):
        raise StackError(f"{path} does not describe a stack; restart `labelloop local up`")
    return state


def check_ports_free(host: str, ports: Iterable[tuple[str, int]]) -> None:
    """StackError naming the first port (and what it is for) another program already listens on."""
    for what, port in ports:
        if not port:
            continue  # any free port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the stack's servers bind (SO_REUSEADDR): the connections a stack that just stopped
            # left in TIME_WAIT do not hold the port, a program listening on it does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                reason = (
                    "is in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error.strerror})"
                )
                raise StackError(
                    f"port {port} ({what}) on {host} {reason}: is `labelloop local up` already running? "
                    f"Stop it, or choose another port"
                ) from None


class DataDirLock:
    """An exclusive lock on the data directory while a stack runs on it: a second stack refuses to
    start instead of touching the first one's files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._handle: IO[str] | None = None

    def acquire(self) -> DataDirLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = (self.directory / ".lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise StackError(f"{self.directory} is used by a running local stack ({owner})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
