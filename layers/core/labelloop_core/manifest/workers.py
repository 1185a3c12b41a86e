"""Optional validation worker processes for the merge: validation is CPU-bound and independent per line.

Plain subprocesses speaking pickle over their stdin/stdout: no fork of a threaded caller (the local
stack runs handlers on threads), no re-import of the caller's __main__, no /dev/shm (AWS Lambda).
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import pickle
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import suppress
from itertools import chain, islice
from typing import cast

from labelloop_core.manifest.lines import ClassMap, Problem, _ChunkVerdict, _LineValidator

logger = logging.getLogger("labelloop_core.manifest")

_CHUNK_LINES = 4000
_PIPE_BYTES = 1024 * 1024  # Linux's default limit for unprivileged processes


def _worker_main() -> None:
    """Entry point of a validation worker: (labels, attribute), then chunks until EOF."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the pipe
    labels, attribute = pickle.load(requests)
    validator = _LineValidator(ClassMap(labels), attribute)
    gc.disable()
    while True:
        try:
            work, want_created = pickle.load(requests)
        except EOFError:
            return
        verdict = _validate(validator, work, want_created)
        pickle.dump(_without_block_sent(verdict, work), replies, pickle.HIGHEST_PROTOCOL)
        replies.flush()


# A worker's reply: a chunk's verdict, with None for the block when it is the text it was sent (every line
# of a block already canonical: the common case), which the merge still holds: half the bytes piped.
_Reply = tuple[list[str | None], str | None, list[int], dict[int, Problem], set[str], list[str | None] | None]


def _without_block_sent(verdict: _ChunkVerdict, work: _Work) -> _Reply:
    refs, block, ends, problems, buckets, created = verdict
    return refs, None if block is work else block, ends, problems, buckets, created


def _with_block_sent(reply: _Reply, work: _Work) -> _ChunkVerdict:
    refs, block, ends, problems, buckets, created = reply
    return refs, cast(str, work) if block is None else block, ends, problems, buckets, created


class _Worker:
    def __init__(self, class_map: ClassMap, attribute: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        code = "from labelloop_core.manifest.workers import _worker_main; _worker_main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        for pipe in (self.process.stdin, self.process.stdout):
            with suppress(
                AttributeError, OSError
            ):  # Linux: a chunk in a few large transfers, not 64 KiB ones
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)  # type: ignore[union-attr]
        try:
            self.send((class_map.labels, attribute))
        except OSError:
            self.close()
            raise

    def send(self, request: object) -> None:
        assert self.process.stdin is not None
        pickle.dump(request, self.process.stdin, pickle.HIGHEST_PROTOCOL)
        self.process.stdin.flush()

    def receive(self) -> _Reply:
        assert self.process.stdout is not None
        reply: _Reply = pickle.load(self.process.stdout)
        return reply

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):  # EOF, or a broken pipe for a busy worker
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _pool_size(workers: int | None) -> int:
    if workers is not None:
        return max(0, workers)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Workers:
    """Validation workers, started on first need and only for inputs longer than one chunk."""

    def __init__(self, count: int, class_map: ClassMap, attribute: str) -> None:
        self.count = count
        self.class_map = class_map
        self.attribute = attribute
        self.started: list[_Worker] = []
        self.failed = count < 2

    def get(self) -> list[_Worker]:
        if not self.started and not self.failed:
            try:
                while len(self.started) < self.count:
                    self.started.append(_Worker(self.class_map, self.attribute))
            except (OSError, ValueError, pickle.PicklingError) as exc:
                self.fail(f"cannot start validation workers: {exc!r}")
        return self.started

    def fail(self, reason: str) -> None:
        logger.warning("validating in this process from now on: %s", reason)
        self.close()
        self.failed = True

    def close(self) -> None:
        for worker in self.started:
            worker.close()
        self.started = []


# A unit of work: a list of lines, or a block of text made of whole lines, each ending in "\n" (from an
# input with `text_blocks()`: S3Store.iter_lines, file_lines), which costs this process no step per line.
_Work = list[str] | str


def _work(lines: Iterable[str]) -> Iterator[_Work]:
    text_blocks: Callable[[], Iterator[str]] | None = getattr(lines, "text_blocks", None)
    if text_blocks is not None:
        yield from (block for block in text_blocks() if block)
        return
    iterator = iter(lines)
    while chunk := list(islice(iterator, _CHUNK_LINES)):
        yield chunk


def _validate(validator: _LineValidator, work: _Work, want_created: bool) -> _ChunkVerdict:
    if isinstance(work, list):
        return validator.validate_chunk(work, want_created)
    lines = work.split("\n")
    lines.pop()  # after the last line break
    return validator.validate_chunk(lines, want_created, work)


def _verdicts(
    lines: Iterable[str], validator: _LineValidator, workers: _Workers, want_created: bool
) -> Iterator[_ChunkVerdict]:
    """The verdicts of the input's chunks in order; on workers when there is more than one chunk and
    the workers start."""
    items = _work(lines)
    first = next(items, None)
    second = next(items, None)
    started = workers.get() if second is not None else []
    unvalidated: Iterable[_Work] = chain(item for item in (first, second) if item is not None)
    unvalidated = chain(unvalidated, items)
    if started:
        unvalidated = yield from _verdicts_on_workers(unvalidated, started, workers, want_created)
    for work in unvalidated:
        yield _validate(validator, work, want_created)


def _verdicts_on_workers(
    chunks: Iterable[_Work], started: list[_Worker], workers: _Workers, want_created: bool
) -> Generator[_ChunkVerdict, None, Iterable[_Work]]:
    """Each worker validates a chunk while this process consumes earlier results; one chunk in flight
    per worker, so the pipes cannot deadlock. A worker gets its next chunk before this process consumes
    its last result. Returns the chunks left unvalidated if a worker fails."""
    idle = deque(started)
    pending: deque[tuple[_Work, _Worker]] = deque()
    remaining = iter(chunks)
    for chunk in remaining:
        done: _ChunkVerdict | None = None
        if not idle:
            worker = pending[0][1]
            done = _receive(pending[0], workers)
            if done is None:
                return chain([c for c, _ in pending], [chunk], remaining)
            pending.popleft()
            idle.append(worker)
        worker = idle.popleft()
        pending.append((chunk, worker))
        try:
            worker.send((chunk, want_created))
        except (OSError, pickle.PicklingError) as exc:
            workers.fail(f"a validation worker stopped accepting work: {exc!r}")
            if done is not None:
                yield done
            return chain([c for c, _ in pending], remaining)
        if done is not None:
            yield done
    while pending:
        done = _receive(pending[0], workers)
        if done is None:
            return [c for c, _ in pending]
        pending.popleft()
        yield done
    return []


def _receive(sent: tuple[_Work, _Worker], workers: _Workers) -> _ChunkVerdict | None:
    work, worker = sent
    try:
        return _with_block_sent(worker.receive(), work)
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        workers.fail(f"a validation worker failed: {exc!r}")
        return None
