"""Where the local stack's output goes while functions run (labelloop_local.stack.logs): a function's
stdout and log records to its own file, the platform's records to platform.log, and what a command
prints on a thread that runs no function to the terminal, even while a function holds sys.stdout."""

from __future__ import annotations

import io
import logging
import sys
import threading
from contextlib import redirect_stdout
from pathlib import Path

from labelloop_local.stack.logs import OUTPUT, logs_in


def _run_as_function(name: str, started: threading.Event, may_end: threading.Event) -> None:
    with OUTPUT.function(name):
        print("function line")
        logging.getLogger("labelloop_core.test").info("function record")
        started.set()
        may_end.wait(10)


def test_a_command_printing_while_a_function_runs_reaches_the_terminal_not_a_log_file(
    tmp_path: Path,
) -> None:
    screen, started, may_end = io.StringIO(), threading.Event(), threading.Event()
    with redirect_stdout(screen), logs_in(tmp_path / "logs") as directory:
        with OUTPUT.redirected():
            function = threading.Thread(target=_run_as_function, args=("DetectFunction", started, may_end))
            function.start()
            assert started.wait(10)
            print("banner line")  # the main thread runs no function
            logging.getLogger("labelloop_local.stack.test").warning("platform record")
            may_end.set()
            function.join(10)
        assert sys.stdout is screen  # the redirection is undone

    assert screen.getvalue() == "banner line\n"
    detect_log = (directory / "DetectFunction.log").read_text(encoding="utf-8")
    assert "function line" in detect_log and "function record" in detect_log
    platform_log = (directory / "platform.log").read_text(encoding="utf-8")
    assert "platform record" in platform_log and "banner line" not in platform_log
