"""The local dispatcher's gate: functions share one process environment, so one function runs at a
time (several invocations of it together); turns go in the order functions started waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import pytest

from labelloop_local.stack.dispatcher import _FunctionGate


class Invocation:
    """One invocation on its own thread: enters the gate, records it, holds it until finished."""

    def __init__(self, gate: _FunctionGate, function: str, entered: list[str]) -> None:
        self.function, self.finished = function, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(gate, entered), daemon=True)
        self._thread.start()

    def _run(self, gate: _FunctionGate, entered: list[str]) -> None:
        with gate.holding(self.function, nullcontext):
            entered.append(self.function)
            self.finished.wait()

    def finish(self) -> None:
        self.finished.set()
        self._thread.join(timeout=10)


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.005)


@pytest.fixture
def gate() -> Iterator[_FunctionGate]:
    yield _FunctionGate()


def test_batches_waiting_behind_a_tick_all_run_before_the_next_tick(gate: _FunctionGate) -> None:
    entered: list[str] = []
    tick = Invocation(gate, "controller", entered)
    _eventually(lambda: entered == ["controller"], "the first tick holds the gate")
    batches = [Invocation(gate, "detect", entered) for _ in range(3)]
    _eventually(lambda: gate._waiting["detect"] == 3, "three batches wait")
    next_tick = Invocation(gate, "controller", entered)
    _eventually(lambda: gate._waiting["controller"] == 1, "the next tick waits")

    tick.finish()

    _eventually(lambda: len(entered) == 4, "the waiting batches enter")
    assert entered == ["controller", "detect", "detect", "detect"]
    for batch in batches:
        batch.finish()
    _eventually(lambda: len(entered) == 5, "the next tick enters once the batches are done")
    assert entered[-1] == "controller"
    next_tick.finish()


def test_a_waiting_function_keeps_newcomers_of_the_holder_out(gate: _FunctionGate) -> None:
    entered: list[str] = []
    batch = Invocation(gate, "detect", entered)
    _eventually(lambda: entered == ["detect"], "a batch holds the gate")
    tick = Invocation(gate, "controller", entered)
    _eventually(lambda: gate._waiting["controller"] == 1, "a tick waits")
    late_batch = Invocation(gate, "detect", entered)
    _eventually(lambda: gate._waiting["detect"] == 1, "a later batch waits")

    batch.finish()

    _eventually(lambda: len(entered) == 2, "the tick enters")
    assert entered == ["detect", "controller"]
    tick.finish()
    _eventually(lambda: len(entered) == 3, "the later batch enters after the tick")
    late_batch.finish()
