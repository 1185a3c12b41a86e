"""Load the unchanged Lambda handlers by path, and give them a Lambda-like context object."""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelloop_local.stack.template import DEFAULT_ACCOUNT, DEFAULT_REGION

Handler = Callable[[dict[str, Any], Any], Any]

_counter = itertools.count(1)


class HandlerLoadError(Exception):
    """The function directory has no loadable handler."""


def load_handler(function_dir: str | Path, handler: str = "app.lambda_handler") -> Handler:
    """Import ``<function_dir>/<module>.py`` as a fresh module (a new "container") and return the handler.

    Each call gets its own module name, so two functions' ``app.py`` never collide in
    ``sys.modules`` and a test starts from a cold container. The function directory is on
    ``sys.path`` only while the module executes (for sibling modules it imports at top level).
    """
    module_name, _, attribute = handler.rpartition(".")
    directory = Path(function_dir).resolve()
    path = directory / f"{module_name.replace('.', '/')}.py"
    if not path.is_file():
        raise HandlerLoadError(f"{path}: no handler module (expected {handler} in {directory})")
    unique_name = f"labelloop_fn_{directory.name}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(unique_name, path)
    if spec is None or spec.loader is None:
        raise HandlerLoadError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique_name] = module
    sys.path.insert(0, str(directory))
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(unique_name, None)
        raise
    finally:
        sys.path.remove(str(directory))
    function = getattr(module, attribute, None)
    if not callable(function):
        raise HandlerLoadError(f"{path}: no callable {attribute}")
    return function


@dataclass
class LambdaContext:
    """The attributes of the Lambda Python context object that Powertools and our handlers read."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_seconds: float = 60.0
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{time.strftime('%Y/%m/%d')}/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_context(function_name: str, timeout_seconds: float = 60.0, memory_mb: int = 512) -> LambdaContext:
    return LambdaContext(
        function_name=function_name, timeout_seconds=timeout_seconds, memory_limit_in_mb=memory_mb
    )


class _SnapshotEnviron(os._Environ[str]):
    """os.environ whose whole reads (iteration, keys, items, values, copy) work on one snapshot, taken
    in one step. The stack swaps a function's variables in and out (`environment`) while other threads
    run: a thread that lists os.environ and then reads each variable it listed would otherwise fail
    with a KeyError when a swap removes one in between. urllib's proxy lookup reads the environment
    that way, and every boto3 client and every urlopen call runs it."""

    def _snapshot(self) -> dict[str, str]:
        data: dict[Any, Any] = self.__dict__["_data"]  # encoded names and values (bytes on POSIX)
        pairs = list(data.items())  # one step: list() of a dict's items holds the GIL throughout
        return {self.decodekey(key): self.decodevalue(value) for key, value in pairs}

    def __iter__(self) -> Iterator[str]:
        return iter(self._snapshot())

    def keys(self) -> Any:
        return self._snapshot().keys()

    def items(self) -> Any:
        return self._snapshot().items()

    def values(self) -> Any:
        return self._snapshot().values()

    def copy(self) -> dict[str, str]:
        return self._snapshot()


def make_environ_reads_consistent() -> None:
    """Give os.environ (the same object, so every module's reference) snapshot reads; idempotent."""
    if type(os.environ) is os._Environ:
        os.environ.__class__ = _SnapshotEnviron


@contextmanager
def environment(values: Mapping[str, str], remove: Iterable[str] = ()) -> Iterator[None]:
    """Set `values` and unset `remove` in os.environ for the block, then restore exactly what was there."""
    removed = set(remove) - set(values)
    saved = {name: os.environ.get(name) for name in set(values) | removed}
    for name in removed:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
