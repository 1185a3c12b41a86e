"""Fixtures shared by every test directory live in `tests/support`; this file only registers them."""

import os
import tempfile

pytest_plugins = ["tests.support.paths", "tests.support.aws_calls", "tests.support.moto_stack"]


def pytest_configure(config: object) -> None:
    # The local stack keeps its state per user (LABELLOOP_HOME, default ~/.local/state/labelloop) so
    # that `labelloop local upload`/`status` find it from any directory: a test run gets its own, and
    # never reads or overwrites the state of a stack the user (or another test run) has running.
    if not os.environ.get("LABELLOOP_HOME"):
        os.environ["LABELLOOP_HOME"] = tempfile.mkdtemp(prefix="labelloop-home-")
