"""Where the local stack's logs go: one file per function, like a CloudWatch log group, so that what
the functions and the platform log never interleaves with what a command prints for a person.

`<data dir>/logs/<FunctionLogicalId>.log` receives what a function writes while it runs (Powertools'
JSON log lines and EMF metrics go to stdout in Lambda, and Python `logging` records of the layer);
`<data dir>/logs/platform.log` receives the local platform's own records (retries, dead letters,
delivery failures). Powertools builds its log handler once per service, on the stdout of that moment,
so functions write to one process-wide `FunctionOutput` that routes each write to the file of the
function running on that thread. What a thread running no function prints while the stream stands in
for sys.stdout (`labelloop local up`'s banner while a schedule's function runs) still reaches the
terminal.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import IO, Any

PLATFORM = "platform"
_LOGGERS = ("labelloop_core", "labelloop_local.stack", "labelloop_local.emulators")


class FunctionOutput:
    """A text stream that writes to the log file of the function running on the current thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._directory: Path | None = None
        self._files: dict[str, IO[str]] = {}
        self._outside: Any = None  # sys.stdout before `redirected` put this stream in its place

    @property
    def directory(self) -> Path | None:
        return self._directory

    def open(self, directory: Path) -> None:
        with self._lock:
            self._close_files()
            directory.mkdir(parents=True, exist_ok=True)
            self._directory = directory

    def close(self) -> None:
        with self._lock:
            self._close_files()
            self._directory = None

    @contextmanager
    def function(self, name: str) -> Iterator[None]:
        """Route this thread's writes (layer logging, and stdout while `redirected`) to `name`'s file."""
        previous = getattr(self._local, "name", None)
        self._local.name = name
        try:
            yield
        finally:
            self._local.name = previous

    @contextmanager
    def redirected(self) -> Iterator[None]:
        """sys.stdout is this stream for the block. Process-wide: whoever runs several functions at
        once enters it once around all of them (`labelloop_local.stack.dispatcher`)."""
        if sys.stdout is not self:
            self._outside = sys.stdout
        with redirect_stdout(self):
            yield

    def write(self, text: str) -> int:
        """A write to sys.stdout: the running function's log file, or where stdout went before."""
        name = getattr(self._local, "name", None)
        target = self._target(name) if name else (self._outside or sys.__stdout__ or sys.stderr)
        target.write(text)
        return len(text)

    def write_record(self, text: str) -> int:
        """A logging record: the running function's log file, or the platform's."""
        self._target(getattr(self._local, "name", None) or PLATFORM).write(text)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.flush()

    def isatty(self) -> bool:
        return False

    def _target(self, name: str) -> Any:
        with self._lock:
            if self._directory is None:  # no stack running: where stdout goes now (never back to us)
                return sys.stdout if sys.stdout is not self else sys.__stderr__
            handle = self._files.get(name)
            if handle is None:
                handle = self._files[name] = (self._directory / f"{name}.log").open(
                    "a", encoding="utf-8", buffering=1
                )
            return handle

    def _close_files(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


OUTPUT = FunctionOutput()


class _Records:
    """The stream the logging handler writes to: records of a function's thread go to its file, the
    platform's own to platform.log."""

    def write(self, text: str) -> int:
        return OUTPUT.write_record(text)

    def flush(self) -> None:
        OUTPUT.flush()


class _Handler(logging.StreamHandler):
    def __init__(self) -> None:
        super().__init__(_Records())
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


@contextmanager
def logs_in(directory: Path, keep_on_console: bool = False) -> Iterator[Path]:
    """Send the stack's logs to files in `directory` for the block (`keep_on_console`: also stderr)."""
    OUTPUT.open(directory)
    handler = _Handler()
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level))
        logger.addHandler(handler)
        logger.propagate = keep_on_console
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    try:
        yield directory
    finally:
        for logger, propagate, level in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
        OUTPUT.close()
